"""Rule fgsmxai_accuracy: accuracy without attack, under FGSM and under BIM."""
import _lib  # noqa: F401  (makes lib/ importable without an install)

from xaisec.papers.fgsmxai.experiment import write_accuracy_table
from xaisec.io import read_json
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    write_accuracy_table([read_json(p) for p in smk.input], smk.output.csv, smk.output.md)
