"""FGSM-XAI paper: runs, inputs and targets (torch-free; read at planning time)."""
from __future__ import annotations

from xaisec.catalog import MASKED_DATASETS
from xaisec.workflow.plan import Plan, pick

VARIANTS = ("clean", "fgsm", "bim")
#: explainer -> the fgsmxai keys only that explainer reads
METHOD_KEYS = {"gradcam": ("gradcam_layer",), "smoothgrad": ("smoothgrad",), "lime": ("lime",)}
CAPTIONS = {
    "table1": "FGSM-XAI Table 1: IoU of the explanations (SmoothGrad, Grad-CAM, LIME) of the "
              "original, FGSM and BIM images with the ground-truth object masks (mean, %), the "
              "paper's value beside each cell.",
    "table2": "FGSM-XAI Table 2: RMSE between the explanations and the ground-truth masks, as "
              "Table 1.",
    "accuracy": "FGSM-XAI Section 5: accuracy without attack, under FGSM and under BIM "
                "(paper: 89.94%, 58.73%, 45.50%).",
    "fig5": "FGSM-XAI Figure 5: evaluation images with their ground-truth masks.",
    "fig6": "FGSM-XAI Figure 6: the explainers' top regions on the original images.",
    "fig7": "FGSM-XAI Figure 7: the FGSM and BIM images with the predictions.",
    "fig8": "FGSM-XAI Figure 8: the explanations of the FGSM images.",
    "fig9": "FGSM-XAI Figure 9: the explanations of the BIM images.",
}


class FgsmxaiTargets(Plan):
    def runs(self, masked_only: bool = False) -> list[tuple]:
        f = self.config["fgsmxai"]
        return [(d, m, s) for d in f["datasets"] for m in f["models"] for s in f["seeds"]
                if not masked_only or d in MASKED_DATASETS]

    def run_dir(self, d, m, s) -> str:
        return f"{self.model_dir(d, m, s)}/fgsmxai"

    def caches(self, d, m, s) -> dict:
        """{(variant, method): cache path} of one run."""
        return {(v, x): f"{self.run_dir(d, m, s)}/cache/{v}-{x}.parquet"
                for v in VARIANTS for x in self.config["fgsmxai"]["explainers"]}

    def _selected(self, wildcards) -> list[tuple]:
        """Runs of a table (1, 2: data sets with masks only) or a figure (5-9: all)."""
        masked = str(wildcards.get("n", "")) in ("1", "2")
        return self.runs(masked_only=masked)

    def table_inputs(self, wildcards) -> dict:
        inputs = {}
        for d, m, s in self._selected(wildcards):
            key = f"{d}_{m}_{s}"
            inputs[f"inputs_{key}"] = f"{self.run_dir(d, m, s)}/inputs.npz"
            inputs[f"test_{key}"] = f"{self.data_dir(d)}/test.npz"
            inputs[f"manifest_{key}"] = f"{self.data_dir(d)}/manifest.json"
            for (v, x), p in self.caches(d, m, s).items():
                inputs[f"cache_{key}_{v}_{x}"] = p
        return inputs

    figure_inputs = table_inputs

    def run_params(self, wildcards) -> list[dict]:
        return [{"dataset": d, "model": m, "seed": s, "data_dir": self.data_dir(d),
                 "inputs": f"{self.run_dir(d, m, s)}/inputs.npz",
                 "caches": self.caches(d, m, s)} for d, m, s in self._selected(wildcards)]

    def accuracy_inputs(self, wildcards) -> list[str]:
        return [f"{self.run_dir(*r)}/accuracy.json" for r in self.runs()]

    # ------------------------------------------------------------ what each job reads

    def inputs_settings(self) -> dict:
        return pick(self.config["fgsmxai"], "n_images", "sample_seed", "eps", "bim", "batch_size")

    def explain_settings(self, wildcards) -> dict:
        return pick(self.config["fgsmxai"], "batch_size", *METHOD_KEYS[wildcards.fxm])

    def report_settings(self) -> dict:
        return pick(self.config["fgsmxai"], "top_fraction", "eps", "bim", "n_examples")

    def caption(self, wildcards) -> str:
        n = str(wildcards.get("n", ""))
        if not n:
            return CAPTIONS["accuracy"]
        return CAPTIONS[f"table{n}" if n in ("1", "2") else f"fig{n}"]

    def targets(self) -> list[str]:
        if not self.runs():
            return []
        out = self.table("fgsmxai_accuracy")
        if self.runs(masked_only=True):
            out += [p for n in (1, 2) for p in self.table(f"fgsmxai_table{n}")]
        return out + [p for n in (5, 6, 7, 8, 9) for p in self.figure(f"fgsmxai_fig{n}")]
