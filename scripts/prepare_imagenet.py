"""Rule prepare_imagenet: the user's ImageNet evaluation images (and masks) in compact form."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.workflow.context import rule_context
from xaisec.workflow.data_tasks import prepare_data

smk = snakemake  # noqa: F821
with rule_context(smk, uses_device=False):
    prepare_data("imagenet", Path(smk.output.manifest).parent, record_path=smk.input.record)
