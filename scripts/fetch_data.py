"""Rule fetch_data: download a real data set (or take its local copy) and extract it."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from xaisec.workflow.context import rule_context
from xaisec.workflow.data_tasks import fetch_data

with rule_context(snakemake, uses_device=False):  # noqa: F821
    fetch_data(snakemake.wildcards.real_dataset, snakemake.params.raw_dir,  # noqa: F821
               snakemake.output.record, source=snakemake.params.source,  # noqa: F821
               checksum=snakemake.params.checksum)  # noqa: F821
