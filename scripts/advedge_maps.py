"""Rules advedge_benign_maps, advedge_adv_maps and advedge_transfer_maps: one interpreter's
maps, cached."""
import _lib  # noqa: F401  (makes lib/ importable without an install)
from pathlib import Path

from xaisec.papers.advedge.experiment import adversarial_maps, benign_maps, transfer_maps
from xaisec.workflow.context import rule_context

smk = snakemake  # noqa: F821
with rule_context(smk) as ctx:
    w = smk.wildcards
    common = dict(settings=smk.params.settings, device=ctx.device,
                  rts_path=smk.input.get("rts"),
                  meta={"dataset": w.dataset, "model": w.model, "seed": int(w.seed)})
    data_dir = Path(smk.input.manifest).parent
    if smk.rule == "advedge_transfer_maps":
        print(transfer_maps(smk.input.model, data_dir, smk.input.inputs, smk.input.adv,
                            smk.output[0], **common))
    elif smk.rule == "advedge_adv_maps":
        adversarial_maps(smk.input.model, data_dir, smk.input.inputs, smk.input.adv, w.interp,
                         smk.output[0], **common)
    else:
        benign_maps(smk.input.model, data_dir, smk.input.inputs, w.interp, smk.output[0],
                    **common)
