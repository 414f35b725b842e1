"""Rule cfn_example_figure: CFN Figures 1, 2 and 19-24 (example grids) and 4 (the final
layer's activation, BN vs CFN), drawn from example test images."""
import _lib  # noqa: F401  (puts the repository's lib/ first on sys.path)
from pathlib import Path

from xaisec.workflow.context import rule_context
from xaisec.papers.cfn.tasks import example_figure

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    spec = smk.params.spec
    attacked = {a: smk.input[a] for a in spec["attacks"]}
    example_figure(int(smk.wildcards.n), spec, Path(smk.input.manifest).parent,
                   smk.input.original, attacked, smk.params.examples, smk.params.trigger,
                   smk.params.xai, [smk.output.png, smk.output.pdf], ctx.device)
