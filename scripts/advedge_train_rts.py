"""Rule advedge_train_rts: the RTS saliency model of one data set and classifier."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

import pandas as pd

from xaisec.io import write_text
from xaisec.papers.advedge.experiment import train_rts
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    rec = train_rts(smk.input.model, Path(smk.input.manifest).parent, smk.output.model,
                    smk.params.settings, ctx.device,
                    meta={"dataset": w.dataset, "model": w.model, "seed": int(w.seed),
                          "provenance": ctx.provenance(rule=smk.rule)})
    write_text(smk.output.history, pd.DataFrame(rec["history"]).to_csv(index=False))
    print(rec["final"])
