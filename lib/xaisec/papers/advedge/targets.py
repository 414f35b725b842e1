"""AdvEdge paper: runs, attack ids, inputs and targets (torch-free; read at planning time).

An attack is identified by ``{framework}-{interpreter}-{variant}``: the paper's grid
(framework x interpreter x variant: PGD x Grad/CAM/RTS/MASK x ADV2/AdvEdge/AdvEdge+), plus
the plain targeted PGD reference ``pgd-none-plain`` (no interpretation term), whose inputs
are explained by every interpreter. Tables and figures read one scores file per run.
"""
from __future__ import annotations

from xaisec.workflow.plan import Plan, PlanError, pick

FRAMEWORKS = ("pgd",)                       # part 2 adds cw and stadv
INTERPRETERS = ("grad", "cam", "rts", "mask")
VARIANTS = ("adv2", "advedge", "advedge+")
REFERENCE = "pgd-none-plain"
#: interpreter -> the keys of ``advedge.<interpreter>`` its explainer reads (the rest is the
#: attack's schedule)
EXPLAINER_KEYS = {"grad": ("of", "pool"), "cam": (), "rts": (), "mask": ("solver",)}
LABELS = {"grad": "Grad", "cam": "CAM", "rts": "RTS", "mask": "MASK", "adv2": "ADV2",
          "advedge": "AdvEdge", "advedge+": "AdvEdge+", "plain": "PGD (no interpretation term)",
          "pgd": "PGD", "cw": "C&W", "stadv": "StAdv"}
#: box-plot figures: number -> (paper data set, metric); Figs. 3-5 ImageNet, 10-15 CIFAR
BOX_FIGURES = {"3": ("imagenet", "l1"), "4": ("imagenet", "iou"), "5": ("imagenet", "noise"),
               "10": ("cifar10", "l1"), "11": ("cifar100", "l1"), "12": ("cifar10", "iou"),
               "13": ("cifar100", "iou"), "14": ("cifar100", "noise"),
               "15": ("cifar10", "noise")}
#: example figures: number -> paper data set (None: every run); Fig. 1 is the CAM teaser
EXAMPLE_FIGURES = {"1": None, "2": "imagenet", "9": "cifar10"}
TABLES = ("table1", "table7", "table8", "comparison")
METRIC_LABELS = {"l1": "L1 distance of the maps", "iou": "IoU of the top maps",
                 "noise": "noise rate (1 - SSIM)"}
CAPTIONS = {
    "table1": "AdvEdge Table I: average time (s) to generate one adversarial input, per "
              "framework, model, interpreter and variant; the paper's values beside (other "
              "hardware: compare the ratios, not the seconds).",
    "table7": "AdvEdge Table VII: attack success rate (%) per framework, model, interpreter and "
              "variant; the paper's text (Sec. V-B) quotes 100% for PGD on every data set.",
    "table8": "AdvEdge Table VIII: misclassification confidence over successful inputs; the "
              "paper's Sec. V-B averages beside.",
    "comparison": "AdvEdge comparison: every metric per attack against the plain targeted PGD "
                  "reference, with a paired test of whether the interpretation term lowers "
                  "the map distance.",
    "fig1": "AdvEdge Figure 1: a benign image, a standard (PGD) adversarial image and a dual "
            "(AdvEdge) adversarial image with their CAM maps.",
    "fig2": "AdvEdge Figure 2: benign and adversarial maps of Grad, CAM, MASK and RTS under "
            "ADV2, AdvEdge and AdvEdge+ (ImageNet).",
    "fig9": "AdvEdge Figure 9: as Figure 2 on CIFAR.",
}
for _n, (_d, _m) in BOX_FIGURES.items():
    CAPTIONS[f"fig{_n}"] = (f"AdvEdge Figure {_n}: {METRIC_LABELS[_m]} between benign and "
                            f"adversarial inputs ({_d} in the paper) per framework, model, "
                            "interpreter and variant, as box plots.")


def attack_id(framework: str, interpreter: str, variant: str) -> str:
    return f"{framework}-{interpreter}-{variant}"


class AdvedgeTargets(Plan):
    @property
    def section(self) -> dict:
        return self.config.get("advedge") or {}

    def runs(self, paper_dataset: str | None = None) -> list[tuple]:
        a = self.section
        return [(d, m, s) for d in a.get("datasets", []) for m in a.get("models", [])
                for s in a.get("seeds", [])
                if paper_dataset is None or self.paper_dataset(d) == paper_dataset]

    def paper_dataset(self, dataset: str) -> str:
        """The paper's data set a configured one stands for (``advedge.stands_for``)."""
        return self.section.get("stands_for", {}).get(dataset, dataset)

    def run_dir(self, d, m, s) -> str:
        return f"{self.model_dir(d, m, s)}/advedge"

    def attacks(self) -> list[str]:
        a = self.section
        ids = [attack_id(f, i, v) for f in a["frameworks"] for i in a["interpreters"]
               for v in a["variants"]]
        return ids + ([REFERENCE] if a.get("reference", True) else [])

    def attack_interpreters(self, aid: str) -> list[str]:
        """The interpreters whose maps of attack ``aid`` are scored: its own; the reference's:
        every configured one."""
        interp = aid.split("-")[1]
        return list(self.section["interpreters"]) if interp == "none" else [interp]

    def run_files(self, d, m, s) -> dict:
        """{name: path} of everything the scores of one run read."""
        rd = self.run_dir(d, m, s)
        files = {"inputs": f"{rd}/inputs.npz"}
        for i in self.section["interpreters"]:
            files[f"benign_{i}"] = f"{rd}/benign/{i}.parquet"
        for aid in self.attacks():
            files[f"adv_{aid}"] = f"{rd}/{aid}/adv.npz"
            for i in self.attack_interpreters(aid):
                files[f"maps_{aid}_{i}"] = f"{rd}/{aid}/maps-{i}.parquet"
        return files

    # ------------------------------------------------------------ inputs of the jobs

    def needs_rts(self, wildcards) -> dict:
        """The trained RTS model, for jobs that build the RTS interpreter."""
        uses = wildcards.get("advint") == "rts" or wildcards.get("interp") == "rts" or (
            wildcards.get("advint") == "none" and "rts" in self.section["interpreters"])
        if not uses:
            return {}
        if wildcards.dataset == "imagenet":
            raise PlanError("AdvEdge's RTS interpreter trains on a training split, and imagenet "
                            "holds evaluation images only: drop rts from "
                            "advedge.interpreters for imagenet")
        rd = self.run_dir(wildcards.dataset, wildcards.model, wildcards.seed)
        return {"rts": f"{rd}/rts.pt"}

    def scores_inputs(self, wildcards) -> dict:
        return self.run_files(wildcards.dataset, wildcards.model, wildcards.seed)

    def scores_files(self, runs=None) -> list[str]:
        return [f"{self.run_dir(*r)}/scores.parquet" for r in (runs or self.runs())]

    def table_inputs(self, wildcards) -> list[str]:
        return self.scores_files()

    def box_inputs(self, wildcards) -> list[str]:
        runs = self.runs(BOX_FIGURES[wildcards.n][0])
        if not runs:
            raise PlanError(f"AdvEdge Figure {wildcards.n} shows {BOX_FIGURES[wildcards.n][0]}: "
                            "no configured data set stands for it (advedge.datasets, "
                            "advedge.stands_for)")
        return self.scores_files(runs)

    def example_runs(self, n: str) -> list[tuple]:
        ds = EXAMPLE_FIGURES[n]
        runs = self.runs(ds) if ds else self.runs()
        if not runs:
            raise PlanError(f"AdvEdge Figure {n} shows {ds}: no configured data set stands for "
                            "it (advedge.datasets, advedge.stands_for)")
        return runs[:1]

    def example_inputs(self, wildcards) -> dict:
        d, m, s = self.example_runs(wildcards.n)[0]
        files = self.run_files(d, m, s)
        return {k: v for k, v in files.items()
                if k == "inputs" or k.startswith("benign_") or k.startswith("adv_")
                or k.startswith("maps_")}

    def example_params(self, wildcards) -> dict:
        d, m, s = self.example_runs(wildcards.n)[0]
        return {"dataset": d, "model": m, "seed": s, "data_dir": self.data_dir(d),
                "files": self.run_files(d, m, s)}

    def run_params(self, wildcards) -> list[dict]:
        return [{"dataset": d, "model": m, "seed": s, "paper_dataset": self.paper_dataset(d),
                 "arch": self.config["models"][m]["arch"]} for d, m, s in self.runs()]

    # ------------------------------------------------------------ what each job reads

    def inputs_settings(self) -> dict:
        return pick(self.section, "n_images", "sample_seed", "target_seed", "batch_size")

    def rts_settings(self) -> dict:
        return pick(self.section, "rts_training")

    def interpreter_settings(self, wildcards) -> dict:
        """What a map job reads: the batch size and the interpreter's own explainer settings
        (not its attack schedule, so a schedule change leaves the benign maps alone)."""
        interp = wildcards.get("interp") or wildcards.get("advint")
        out = pick(self.section, "batch_size")
        if interp in INTERPRETERS:
            out[interp] = pick(self.section[interp], *EXPLAINER_KEYS[interp])
        return out

    def attack_settings(self, wildcards) -> dict:
        keys = ["batch_size", "eps", "alpha", "edge_stages", "smoothing", "schedules"]
        if wildcards.advint == "none":
            keys.append("reference_steps")
        else:
            keys += ["phi", wildcards.advint]
        return pick(self.section, *keys)

    def report_settings(self) -> dict:
        return pick(self.section, "iou_top_fraction", "frameworks", "interpreters",
                    "variants", "edge_stages", "smoothing", "schedules")

    def example_settings(self) -> dict:
        return pick(self.section, "examples")

    def caption(self, wildcards) -> str:
        name = wildcards.get("name")
        return CAPTIONS[name] if name else CAPTIONS[f"fig{wildcards.n}"]

    def targets(self) -> list[str]:
        if not self.runs():
            return []
        out = [p for t in TABLES for p in self.table(f"advedge_{t}")]
        figs = [n for n, (d, _) in BOX_FIGURES.items() if self.runs(d)]
        figs += [n for n, d in EXAMPLE_FIGURES.items() if d is None or self.runs(d)]
        return out + [p for n in figs for p in self.figure(f"advedge_fig{n}")]
