"""CFN paper: what each table and figure is built from (torch-free; read at planning time).

Tables 1-4, Figures 5-6 and 12-13 are the BatchNorm ResNet-20 of the paper's Section 3, named
by ``backdoor.tables.model``; Table 5 and Figures 15-18 the ResNet-20s without BN / with frozen
BN; Table 8 and Figures 7, 14 the Softplus ResNet-20. A model's regime and architecture come
from its config entry (``models.<key>``), never from its key. Sources: the paper's Sections 3-6
and appendix (docs/settings.md lists each setting).
"""
from __future__ import annotations

from xaisec.catalog import CFN_ATTACKS, CFN_LOSSES
from xaisec.workflow.plan import Plan, needs, pick

#: Tables 1-4: (config key of the data set, attacks, losses, laid out by attack?)
TABLES = {
    1: ("table1", ("sf",), CFN_LOSSES, False),
    2: ("table2", ("rh",), CFN_LOSSES, False),
    3: ("table3", ("fd",), CFN_LOSSES, False),
    4: ("table4", CFN_ATTACKS, ("mse",), True),
}

CAPTIONS = {
    "table1": "Table 1: Simple Fooling on CIFAR-10 (Grad, Grad-CAM, Relevance-CAM x MSE, DSSIM), "
              "attack vs defense.",
    "table2": "Table 2: Red Herring on CIFAR-10.",
    "table3": "Table 3: Full Disguise on CIFAR-10.",
    "table4": "Table 4: SF, RH and FD on GTSRB (MSE).",
    "table5": "Table 5: the three attacks on ResNet-20 without BN and with non-trainable BN "
              "(explanation MSE, ASR), the paper's values beside.",
    "table6": "Table 6: the attack scenarios C1-C6 and how this project realises each.",
    "table7": "Table 7: clean accuracy of the C3 (core weights only) and C5 (fine-tuned with CFN) "
              "attacks, with BN (C3, C5) and CFN (C4, C6).",
    "table8": "Table 8: Softplus-trained models (beta 5) attacked and defended, the paper's "
              "values beside.",
    "comparison": "Every reproduced cell of Tables 1-4 next to the published value.",
}

#: the per-sample value shown, attacks, model regime and loss of the SRC / p-value figures
SRC_FIGURES = {
    5: {"value": "src", "attacks": ("sf", "rh"), "models": "bn", "loss": "mse",
        "caption": "SRC, SF and RH, attack vs defense"},
    6: {"value": "src", "attacks": ("fd",), "models": "bn", "loss": "mse",
        "caption": "SRC, FD, attack vs defense"},
    7: {"value": "src", "attacks": CFN_ATTACKS, "models": "softplus", "loss": "mse",
        "caption": "SRC, Softplus-trained models"},
    12: {"value": "src_p", "attacks": ("sf", "rh"), "models": "bn", "loss": "mse",
         "caption": "p-values of Figure 5 (SF, RH)"},
    13: {"value": "src_p", "attacks": ("fd",), "models": "bn", "loss": "mse",
         "caption": "p-values of Figure 6 (FD)"},
    14: {"value": "src_p", "attacks": CFN_ATTACKS, "models": "softplus", "loss": "mse",
         "caption": "p-values of Figure 7 (Softplus)"},
    15: {"value": "src", "attacks": CFN_ATTACKS, "models": "nobn", "loss": "mse",
         "caption": "SRC, models without BN (Table 5)"},
    16: {"value": "src_p", "attacks": CFN_ATTACKS, "models": "nobn", "loss": "mse",
         "caption": "p-values of Figure 15 (no BN)"},
    17: {"value": "src", "attacks": CFN_ATTACKS, "models": "frozenbn", "loss": "mse",
         "caption": "SRC, models with non-trainable BN (Table 5)"},
    18: {"value": "src_p", "attacks": CFN_ATTACKS, "models": "frozenbn", "loss": "mse",
         "caption": "p-values of Figure 17 (non-trainable BN)"},
}

#: score and regimes (panels) of the layer-wise weight similarity figures
WEIGHT_FIGURES = {
    3: {"score": "cka", "regimes": ("bn", "frozenbn", "nobn"), "arch": "ResNet-20",
        "caption": "CKA per layer between original and attacked weights, with BN, frozen BN, "
                   "without BN"},
    10: {"score": "spearman", "regimes": ("bn", "frozenbn", "nobn"), "arch": "ResNet-20",
         "caption": "Spearman correlation per layer (regimes as Figure 3)"},
    11: {"score": "cka", "regimes": ("bn", "frozenbn"), "arch": "VGG-13",
         "caption": "CKA per layer for VGG-13, with BN and frozen BN"},
}

#: the batch-size ablation's figures: what each shows
BATCHSIZE_FIGURES = {
    8: {"caption": "ASR and explanation MSE of an RH/Relevance-CAM model under CFN against the "
                   "evaluation batch size"},
    9: {"caption": "accuracy against the evaluation batch size (attacked with CFN, attacked, "
                   "original)"},
}

#: example grids: (data set key of backdoor.examples, explainer, attacks, what is shown);
#: Figure 4 is the final layer's activation of the RH/Grad-CAM model, BN vs CFN (the paper
#: does not name the attack)
EXAMPLE_FIGURES = {
    1: ("cifar", "gradcam", ("sf", "rh", "fd"), "attacks and defenses"),
    2: ("cifar", "gradcam", ("sf", "rh", "fd"), "attack profiles"),
    19: ("cifar", "gradcam", ("fd",), "FD attack and defense"),
    20: ("cifar", "gradcam", ("rh",), "RH attack and defense"),
    21: ("cifar", "gradcam", ("sf",), "SF attack and defense"),
    22: ("gtsrb", "relevancecam", ("fd",), "FD attack and defense"),
    23: ("gtsrb", "relevancecam", ("rh",), "RH attack and defense"),
    24: ("gtsrb", "relevancecam", ("sf",), "SF attack and defense"),
}
ACTIVATION_FIGURES = {
    4: ("cifar", "gradcam", ("rh",), "final-layer activation of triggered inputs, RH model, "
                                     "BN vs CFN"),
}

EXAMPLES_AND_ACTIVATIONS = {**EXAMPLE_FIGURES, **ACTIVATION_FIGURES}

#: attacker scenarios of Table 6 as fine-tuning settings
SCENARIOS = {"c1": {}, "c3": {"trainable": "core"}, "c5": {"norm": "cfn"}}


class CfnTargets(Plan):
    """Runs, inputs and targets of the CFN paper."""

    CAPTIONS = CAPTIONS

    # ------------------------------------------------------------ runs

    def backdoor_runs(self) -> list[tuple]:
        """Every (dataset, model, seed, attack, explainer, loss) of backdoor.experiments
        (computed once: every input function of the plan asks for it)."""
        if getattr(self, "_runs", None) is None:
            self._runs = self._backdoor_runs()
        return self._runs

    def _backdoor_runs(self) -> list[tuple]:
        c = self.config
        runs = []
        for exp in c["backdoor"]["experiments"]:
            for d in exp["datasets"]:
                for m in exp.get("models") or c["clean"]["models"]:
                    for s in c["clean"]["seeds"]:
                        for a in exp["attacks"]:
                            for e in exp["explainers"]:
                                for lo in exp["losses"]:
                                    runs.append((d, m, s, a, e, lo))
        return list(dict.fromkeys(runs))

    def run_dir(self, d, m, s, a, e, lo) -> str:
        return f"{self.model_dir(d, m, s)}/backdoor/{a}-{e}-{lo}"

    def per_sample_files(self, runs) -> list[str]:
        """Sorted, so that a target's inputs do not depend on the order of the config."""
        return sorted({f"{self.run_dir(*r)}/per_sample.parquet" for r in runs})

    def tables_model(self) -> str:
        return self.config["backdoor"]["tables"]["model"]

    def runs_where(self, datasets=None, models=None, attacks=None, losses=None,
                   regime=None, arch=None) -> list[tuple]:
        """Runs filtered by data set, model key, attack, loss, and the model's regime and
        architecture read from its config entry."""
        if getattr(self, "_info", None) is None:
            self._info = self.model_info({r[1] for r in self.backdoor_runs()})
        info = self._info
        return [r for r in self.backdoor_runs()
                if (datasets is None or r[0] in datasets) and (models is None or r[1] in models)
                and (attacks is None or r[3] in attacks) and (losses is None or r[5] in losses)
                and (regime is None or info[r[1]]["regime"] == regime)
                and (arch is None or info[r[1]]["arch"] == arch)]

    # ------------------------------------------------------------ per-run params

    def hyper(self, wildcards) -> dict:
        return self.config["backdoor"]["hyper"][wildcards.attack][wildcards.loss][wildcards.explainer]

    def trigger(self) -> dict:
        f = self.config["backdoor"]["finetune"]
        return {"row": f["trigger_row"], "col": f["trigger_col"]}

    def xai(self, wildcards) -> dict:
        """The xai settings the explainer of this job reads (Relevance-CAM's weighting only)."""
        if wildcards.explainer == "relevancecam":
            return pick(self.config["xai"], "relevancecam_weighting")
        return {}

    def explain_evaluation(self) -> dict:
        """The evaluation keys an explanation cache depends on."""
        return pick(self.config["evaluation"], "batch_size", "n_samples", "seed", "composition")

    def backdoor_evaluation(self) -> dict:
        """The evaluation keys evaluate_backdoor reads."""
        return pick(self.config["evaluation"], "defenses", "error_normalization",
                    "triggered_reference")

    def cache_file(self, source_dir, defense, explainer, variant) -> str:
        return f"{source_dir}/cache/{defense}-{explainer}-{variant}.parquet"

    def evaluate_backdoor_inputs(self, wildcards) -> dict:
        w = wildcards
        clean_dir = f"{self.model_dir(w.dataset, w.model, w.seed)}/clean"
        rdir = self.run_dir(w.dataset, w.model, w.seed, w.attack, w.explainer, w.loss)
        inputs = {f"original_{v}": self.cache_file(clean_dir, "none", w.explainer, v)
                  for v in ("clean", "triggered")}
        for d in self.config["evaluation"]["defenses"]:
            for v in ("clean", "triggered"):
                inputs[f"{d}_{v}"] = self.cache_file(rdir, d, w.explainer, v)
        return inputs

    def defenses(self) -> list[str]:
        return list(self.config["evaluation"]["defenses"])

    # ------------------------------------------------------------ Tables 1-4, Figures 5-6

    def table_runs(self, n: int) -> list[tuple]:
        key, attacks, losses, _ = TABLES[n]
        return self.runs_where([self.config["backdoor"]["tables"][key]], [self.tables_model()],
                               attacks, losses)

    def table_inputs(self, wildcards) -> list[str]:
        n = int(wildcards.n)
        return self.per_sample_files(needs(
            self.table_runs(n), f"CFN Table {n}",
            f"attacked runs of the model {self.tables_model()!r} (backdoor.tables.model) on "
            f"{self.config['backdoor']['tables'][TABLES[n][0]]} with attacks {TABLES[n][1]} "
            "in backdoor.experiments"))

    def table_spec(self, wildcards) -> dict:
        n = int(wildcards.n)
        key, attacks, losses, by_attack = TABLES[n]
        return {"dataset": self.config["backdoor"]["tables"][key], "attacks": list(attacks),
                "losses": list(losses), "by_attack": by_attack, "table": f"Table {n}",
                "model": self.tables_model()}

    def comparison_inputs(self, wildcards) -> list[str]:
        runs = [r for n in TABLES for r in self.table_runs(n)]
        return self.per_sample_files(list(dict.fromkeys(runs)))

    def comparison_tables(self) -> dict:
        return {f"Table {n}": self.config["backdoor"]["tables"][t[0]] for n, t in TABLES.items()}

    # ------------------------------------------------------------ SRC and p-value figures

    def src_runs(self, n: int) -> list[tuple]:
        spec = SRC_FIGURES[n]
        if spec["models"] == "bn":  # Figures 5, 6, 12, 13: the model of Tables 1-4
            return self.runs_where(None, [self.tables_model()], spec["attacks"], (spec["loss"],))
        d = self.config["backdoor"]["tables"]["table8" if spec["models"] == "softplus" else "table5"]
        return self.runs_where([d], None, spec["attacks"], (spec["loss"],),
                               regime=spec["models"], arch="resnet20")

    def src_inputs(self, wildcards) -> list[str]:
        n = int(wildcards.n)
        return self.per_sample_files(needs(
            self.src_runs(n), f"CFN Figure {n}",
            f"attacked runs (MSE) of ResNet-20 {SRC_FIGURES[n]['models']} models in "
            "backdoor.experiments"))

    # ------------------------------------------------------------ Tables 5, 8

    def table5_runs(self) -> list[tuple]:
        d = self.config["backdoor"]["tables"]["table5"]
        return [r for regime in ("nobn", "frozenbn")
                for r in self.runs_where([d], None, None, ("mse",), regime=regime,
                                         arch="resnet20")]

    def table8_runs(self) -> list[tuple]:
        d = self.config["backdoor"]["tables"]["table8"]
        return self.runs_where([d], None, None, ("mse",), regime="softplus", arch="resnet20")

    def table5_inputs(self, wildcards) -> list[str]:
        d = self.config["backdoor"]["tables"]["table5"]
        return self.per_sample_files(needs(
            self.table5_runs(), "CFN Table 5",
            f"attacked runs (MSE) of a ResNet-20 nobn or frozenbn model on {d} in "
            "backdoor.experiments"))

    def table8_inputs(self, wildcards) -> list[str]:
        d = self.config["backdoor"]["tables"]["table8"]
        return self.per_sample_files(needs(
            self.table8_runs(), "CFN Table 8",
            f"attacked runs (MSE) of a ResNet-20 softplus model on {d} in backdoor.experiments"))

    def models_of(self, files) -> dict:
        """{key: {arch, regime}} of the models whose runs a target reads."""
        keys = sorted({r[1] for r in self.backdoor_runs()
                       if f"{self.run_dir(*r)}/per_sample.parquet" in set(files)})
        return self.model_info(keys)

    def table5_models(self, wildcards) -> dict:
        return self.models_of(self.per_sample_files(self.table5_runs()))

    def table8_models(self, wildcards) -> dict:
        return self.models_of(self.per_sample_files(self.table8_runs()))

    def src_models(self, wildcards) -> dict:
        return self.models_of(self.per_sample_files(self.src_runs(int(wildcards.n))))

    # ------------------------------------------------------------ Table 7: scenarios

    def scenario_runs(self) -> list[tuple]:
        sc, seeds = self.config["backdoor"]["scenarios"], self.config["clean"]["seeds"]
        return [(d, m, s, a, e, sc["loss"], c) for d in sc["datasets"] for m in sc["models"]
                for s in seeds for a in sc["attacks"] for e in sc["explainers"]
                for c in sc["scenarios"]]

    def scenario_dir(self, d, m, s, a, e, lo, c) -> str:
        return f"{self.run_dir(d, m, s, a, e, lo)}-{c}"

    def table7_inputs(self, wildcards) -> dict:
        runs = needs(self.scenario_runs(), "CFN Table 7", "scenario runs (backdoor.scenarios)")
        return {"scenario": [f"{self.scenario_dir(*r)}/accuracy.json" for r in runs],
                "meta": [f"{self.scenario_dir(*r)}/model.json" for r in runs],
                "clean": [f"{self.model_dir(*r[:3])}/clean/accuracy.json" for r in runs]}

    # ------------------------------------------------------------ weight similarity

    def weight_pairs(self, n: int) -> list[dict]:
        w = self.config["backdoor"]["weights"]
        regimes = w["vgg"] if n == 11 else w["resnet"]
        pairs = []
        for regime, key in regimes.items():
            for r in self.runs_where([w["dataset"]], [key]):
                pairs.append({"regime": regime, "model": key,
                              "original": f"{self.model_dir(*r[:3])}/clean/model.pt",
                              "attacked": f"{self.run_dir(*r)}/model.pt"})
        return pairs

    def weight_inputs(self, wildcards) -> list[str]:
        n = int(wildcards.n)
        w = self.config["backdoor"]["weights"]
        regimes = w["vgg"] if n == 11 else w["resnet"]
        pairs = needs(self.weight_pairs(n), f"CFN Figure {n}",
                      f"attacked runs of the models {sorted(regimes.values())} on "
                      f"{w['dataset']} in backdoor.experiments")
        return sorted({p for q in pairs for p in (q["original"], q["attacked"])})

    def weight_params(self, wildcards) -> list[dict]:
        return self.weight_pairs(int(wildcards.n))

    # ------------------------------------------------------------ batch-size ablation

    def ablation_run(self) -> tuple:
        a = self.config["backdoor"]["ablation"]
        return (a["dataset"], a["model"], self.config["clean"]["seeds"][0], a["attack"],
                a["explainer"], a["loss"])

    def ablation_csv(self) -> str:
        return f"{self.run_dir(*self.ablation_run())}/batchsize.csv"

    def ablation_settings(self) -> dict:
        """The backdoor.ablation keys batchsize_ablation reads."""
        return pick(self.config["backdoor"]["ablation"], "batch_sizes", "n_samples", "explainer",
                    "loss", "attack")

    def ablation_evaluation(self) -> dict:
        """... and the evaluation seed, which draws and orders its images."""
        return pick(self.config["evaluation"], "seed")

    # ------------------------------------------------------------ example grids (1, 2, 4, 19-24)

    def example_runs(self, n: int) -> dict:
        ex = self.config["backdoor"]["examples"]
        key, xai, attacks, _ = EXAMPLES_AND_ACTIVATIONS[n]
        d, seed = ex[key], self.config["clean"]["seeds"][0]
        return {a: (d, ex["model"], seed, a, xai, ex["loss"]) for a in attacks}

    def example_inputs(self, wildcards) -> dict:
        runs = self.example_runs(int(wildcards.n))
        d, m, s = next(iter(runs.values()))[:3]
        return {"test": f"{self.data_dir(d)}/test.npz",
                "manifest": f"{self.data_dir(d)}/manifest.json",
                "original": f"{self.model_dir(d, m, s)}/clean/model.pt",
                **{a: f"{self.run_dir(*r)}/model.pt" for a, r in runs.items()}}

    def example_spec(self, wildcards) -> dict:
        n = int(wildcards.n)
        key, xai, attacks, what = EXAMPLES_AND_ACTIVATIONS[n]
        ex = self.config["backdoor"]["examples"]
        return {"explainer": xai, "attacks": list(attacks),
                "kind": "activations" if n in ACTIVATION_FIGURES else "examples",
                "title": f"CFN paper, Figure {n} (reproduced): {what}, {ex[key]}, {xai}"}

    def example_settings(self) -> dict:
        return pick(self.config["backdoor"]["examples"], "n_images", "context", "seed")

    def example_xai(self, wildcards) -> dict:
        xai = EXAMPLES_AND_ACTIVATIONS[int(wildcards.n)][1]
        return pick(self.config["xai"], "relevancecam_weighting") if xai == "relevancecam" else {}

    # ------------------------------------------------------------ targets

    def targets(self) -> list[str]:
        """Every CFN table and figure this config can build."""
        if not self.backdoor_runs():  # the CFN part is switched off (e.g. ImageNet only)
            return []
        out = []
        for n in TABLES:
            if self.table_runs(n):
                out += self.table(f"cfn_table{n}")
        if out:
            out += self.table("cfn_comparison")
        if self.table5_runs():
            out += self.table("cfn_table5")
        out += self.table("cfn_table6")
        if self.scenario_runs():
            out += self.table("cfn_table7")
        if self.table8_runs():
            out += self.table("cfn_table8")
        for n in SRC_FIGURES:
            if self.src_runs(n):
                out += self.figure(f"cfn_fig{n}")
        for n in WEIGHT_FIGURES:
            if self.weight_pairs(n):
                out += self.figure(f"cfn_fig{n}")
        for n in (*BATCHSIZE_FIGURES, *EXAMPLE_FIGURES, *ACTIVATION_FIGURES):
            out += self.figure(f"cfn_fig{n}")
        return out

    def caption(self, kind: str):
        """A params function: the caption of one output of a rule of kind ``kind``."""
        def fn(wildcards):
            n = int(wildcards.n) if "n" in wildcards.keys() else None
            if kind == "table":
                return CAPTIONS[f"table{n}"] if n is not None else CAPTIONS["comparison"]
            spec = {"src": SRC_FIGURES, "weights": WEIGHT_FIGURES,
                    "batchsize": BATCHSIZE_FIGURES}.get(kind)
            if spec is not None:
                return f"Figure {n}: {spec[n]['caption']}."
            return f"Figure {n}: {EXAMPLES_AND_ACTIVATIONS[n][3]}."
        return fn
