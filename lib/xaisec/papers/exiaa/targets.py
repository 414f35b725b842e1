"""EXIAA paper: runs, inputs and targets (torch-free; read at planning time)."""
from __future__ import annotations

from xaisec.workflow.plan import Plan, pick

#: table -> explainer (Table 1: DeepLIFT SHAP; B.1-B.3: Saliency, IG, DeepLIFT SHAP)
TABLES = {"1": "deepliftshap", "B1": "saliency", "B2": "ig", "B3": "deepliftshap"}
#: explainer -> the exiaa keys only that explainer reads
METHOD_KEYS = {"saliency": (), "ig": ("ig",), "deepliftshap": ("deepliftshap",)}
#: attack-image selection -> the keys only that selection reads
SELECTION_KEYS = {"runnerup": (), "others": ("fig5",), "top": ("figA1",), "low": ("figA1",)}
CAPTIONS = {
    "1": "EXIAA Table 1 (DeepLIFT SHAP, seven top-k values): percentage change of the "
         "explanation and absolute change of the predicted class's confidence, attack and "
         "Gaussian-noise baseline, per alpha and top-k; the paper's ImageNet values below.",
    "B1": "EXIAA Table B.1: as Table 1 with Saliency, every top-k.",
    "B2": "EXIAA Table B.2: as Table 1 with Integrated Gradients, every top-k.",
    "B3": "EXIAA Table B.3: as Table 1 with DeepLIFT SHAP, every top-k.",
    "2": "EXIAA Figure 2: explanation change over top-k, one line per alpha, the noise baseline "
         "dotted.",
    "3": "EXIAA Figure 3: SSIM over top-k, one line per alpha, the noise baseline dotted.",
    "4": "EXIAA Figure 4: confidence change over top-k, one line per alpha, the noise baseline "
         "dotted.",
    "5": "EXIAA Figure 5: running-up class images against images of every other class.",
    "A1": "EXIAA Figure A.1: the most confident attack images against low-ranked ones.",
}


class ExiaaTargets(Plan):
    def runs(self, datasets=None) -> list[tuple]:
        e = self.config["exiaa"]
        return [(d, m, s) for d in e["datasets"] for m in e["models"] for s in e["seeds"]
                if datasets is None or d in datasets]

    def grid_file(self, d, m, s, explainer, selection) -> str:
        return f"{self.model_dir(d, m, s)}/exiaa/{explainer}-{selection}.parquet"

    def table_inputs(self, wildcards) -> list[str]:
        e = TABLES[wildcards.t]
        return [self.grid_file(d, m, s, e, "runnerup") for d, m, s in self.runs()]

    def figure_inputs(self, wildcards) -> list[str]:
        e = self.config["exiaa"]
        if wildcards.f == "5":
            runs, sels = self.runs(e["fig5"]["datasets"]), ("runnerup", "others")
        elif wildcards.f == "A1":
            runs, sels = self.runs(e["figA1"]["datasets"]), ("top", "low")
        else:
            runs, sels = self.runs(), ("runnerup",)
        return [self.grid_file(d, m, s, x, sel) for d, m, s in runs for x in e["explainers"]
                for sel in sels]

    def grid_settings(self, wildcards) -> dict:
        """The exiaa keys one grid job reads."""
        return pick(self.config["exiaa"], "n_images", "sample_seed", "pool", "attack_ranks",
                    "alphas", "topks", "baseline", "explain_target", "batch_size",
                    "images_per_chunk", "noise_seed", *METHOD_KEYS[wildcards.exm],
                    *SELECTION_KEYS[wildcards.selection])

    def caption(self, wildcards) -> str:
        return CAPTIONS[wildcards.get("t") or wildcards.get("f")]

    def targets(self) -> list[str]:
        e = self.config["exiaa"]
        if not self.runs():
            return []
        out = [p for t, x in TABLES.items() if x in e["explainers"]
               for p in self.table(f"exiaa_table{t}")]
        figs = ["2", "3", "4"]
        if self.runs(e["fig5"]["datasets"]):
            figs.append("5")
        if self.runs(e["figA1"]["datasets"]):
            figs.append("A1")
        return out + [p for f in figs for p in self.figure(f"exiaa_fig{f}")]
