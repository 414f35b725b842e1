"""Rule prepare_data: write the canonical compact form of one data set."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.workflow.context import rule_context
from xaisec.workflow.data_tasks import prepare_data

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    prepare_data(smk.wildcards.dataset, Path(smk.output.manifest).parent,
                 record_path=smk.input.get("record"), image_size=smk.params.image_size,
                 shapes=smk.params.shapes)
