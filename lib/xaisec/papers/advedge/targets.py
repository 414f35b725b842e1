"""AdvEdge paper: runs, attack ids, inputs and targets (torch-free; read at planning time).

An attack is identified by ``{framework}-{interpreter}-{variant}``: the paper's grid
(framework x interpreter x variant: PGD x Grad/CAM/RTS/MASK x ADV2/AdvEdge/AdvEdge+), plus
the plain targeted PGD reference ``pgd-none-plain`` (no interpretation term), whose inputs
are explained by every interpreter. Tables and figures read one scores file per run.
"""
from __future__ import annotations

from xaisec.papers.advedge.defense_targets import DEFENSE_CAPTIONS, DEFENSE_TABLES, DefenseTargets
from xaisec.workflow.plan import Plan, PlanError, pick

FRAMEWORKS = ("pgd", "cw", "stadv")
INTERPRETERS = ("grad", "cam", "rts", "mask")
VARIANTS = ("adv2", "advedge", "advedge+")
REFERENCE = "pgd-none-plain"
#: interpreter -> the keys of ``advedge.<interpreter>`` its explainer reads (the rest is the
#: attack's schedule)
EXPLAINER_KEYS = {"grad": ("of", "pool"), "cam": (), "rts": (), "mask": ("solver",)}
#: interpreter -> the keys of ``advedge.<interpreter>`` its attack term reads (every framework)
TERM_KEYS = {"grad": (), "cam": (), "rts": ("encoder_weight",),
             "mask": ("inner_steps", "after_steps", "resolve_every", "resolve_iterations")}
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
#: Table II and Figure 6 need the transfer study (``advedge.transfer.n_samples`` > 0)
TRANSFER_TABLES = ("table2",)
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
    "table2": "AdvEdge Table II: L1 distance between adversarial and benign maps when the "
              "inputs made against one interpreter (rows) are explained by another (columns), "
              "per framework, model and variant; the paper's ImageNet values beside.",
    "fig6": "AdvEdge Figure 6: maps of adversarial inputs made against one interpreter (rows) "
            "under every interpreter (columns), beside the benign maps (PGD).",
    "fig7": "AdvEdge Figure 7: outliers of the box plots (L1 above Q3 + 1.5 IQR), with their "
            "benign and adversarial maps.",
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


CAPTIONS.update(DEFENSE_CAPTIONS)


class AdvedgeTargets(DefenseTargets, Plan):
    attack_id = staticmethod(attack_id)
    explainer_keys = EXPLAINER_KEYS

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

    def framework_interpreters(self, framework: str) -> list[str]:
        """The interpreters attacked in ``framework`` (``advedge.<framework>.interpreters``,
        default ``advedge.interpreters``)."""
        a = self.section
        own = (a.get(framework) or {}).get("interpreters") if framework != "pgd" else None
        return [i for i in a["interpreters"] if own is None or i in own]

    def attacks(self) -> list[str]:
        a = self.section
        ids = [attack_id(f, i, v) for f in a["frameworks"]
               for i in self.framework_interpreters(f) for v in a["variants"]]
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
        if wildcards.name in DEFENSE_TABLES:
            return self.defense_table_inputs(wildcards.name)
        if wildcards.name in TRANSFER_TABLES:
            if not self.transfer_enabled():
                raise PlanError("AdvEdge Table II needs the transfer study "
                                "(advedge.transfer.n_samples > 0, two or more interpreters)")
            return self.transfer_scores_files()
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
        """What one attack job reads: the shared switches, its framework's keys and its
        interpreter's schedule in that framework, and the interpreter's explainer and term
        settings (a C&W schedule change leaves the PGD attacks alone, and vice versa)."""
        fw, interp = wildcards.advfw, wildcards.advint
        a = self.section
        if interp == "none":
            return pick(a, "batch_size", "eps", "alpha", "reference_steps", "edge_stages",
                        "smoothing", "schedules")
        if fw == "pgd":
            return pick(a, "batch_size", "eps", "alpha", "edge_stages", "smoothing",
                        "schedules", "phi", interp)
        out = pick(a, "batch_size", "edge_stages", "schedules", "phi")
        out[fw] = {k: v for k, v in a[fw].items() if k not in INTERPRETERS + ("interpreters",)}
        out[fw][interp] = a[fw][interp]
        out[interp] = pick(a[interp], *EXPLAINER_KEYS[interp], *TERM_KEYS[interp])
        return out

    # ------------------------------------------------------------ transferability

    def transfer_enabled(self) -> bool:
        a = self.section
        return a.get("transfer", {}).get("n_samples", 0) > 0 and len(a["interpreters"]) > 1

    def transfer_attacks(self) -> list[str]:
        """The attacks whose inputs are explained by the other interpreters (Table II)."""
        fws = self.section["transfer"].get("frameworks") or self.section["frameworks"]
        return [aid for aid in self.attacks()
                if aid.split("-")[1] != "none" and aid.split("-")[0] in fws]

    def transfer_files(self, d, m, s) -> dict:
        """{name: path} of what Table II's scores of one run read: per transferred attack, its
        images, its own maps and the folder of the other interpreters' maps of its subset."""
        rd = self.run_dir(d, m, s)
        files = {"inputs": f"{rd}/inputs.npz"}
        for i in self.section["interpreters"]:
            files[f"benign_{i}"] = f"{rd}/benign/{i}.parquet"
        for aid in self.transfer_attacks():
            src = aid.split("-")[1]
            files[f"adv_{aid}"] = f"{rd}/{aid}/adv.npz"
            files[f"maps_{aid}_{src}"] = f"{rd}/{aid}/maps-{src}.parquet"
            files[f"transfer_{aid}"] = f"{rd}/{aid}/transfer"
        return files

    def transfer_needs_rts(self, wildcards) -> dict:
        """The trained RTS model when a transfer job explains with RTS (RTS configured and not
        the attacked interpreter)."""
        if "rts" not in self.section["interpreters"] or wildcards.advint == "rts":
            return {}
        rd = self.run_dir(wildcards.dataset, wildcards.model, wildcards.seed)
        return {"rts": f"{rd}/rts.pt"}

    def _check_transfer(self) -> None:
        if not self.transfer_enabled():
            raise PlanError("the transfer study is off (advedge.transfer.n_samples is 0 or "
                            "fewer than two interpreters are configured)")

    def transfer_inputs(self, wildcards) -> dict:
        self._check_transfer()
        return self.transfer_files(wildcards.dataset, wildcards.model, wildcards.seed)

    def transfer_scores_files(self) -> list[str]:
        return [f"{self.run_dir(*r)}/transfer.parquet" for r in self.runs()]

    def transfer_settings(self, wildcards) -> dict:
        """What a transfer job reads: every interpreter's explainer settings, the subset's."""
        a = self.section
        out = pick(a, "batch_size", "interpreters")
        for i in a["interpreters"]:
            out[i] = pick(a[i], *EXPLAINER_KEYS[i])
        out["transfer"] = pick(a["transfer"], "n_samples", "seed")
        return out

    def figure6_run(self) -> tuple:
        runs = self.runs()
        model = self.section["transfer"].get("figure_model")
        chosen = [r for r in runs if model is None or r[1] == model]
        if not chosen:
            raise PlanError(f"advedge.transfer.figure_model {model!r} is not in advedge.models")
        return chosen[0]

    def figure6_inputs(self, wildcards) -> dict:
        self._check_transfer()
        return self.transfer_files(*self.figure6_run())

    def figure_run_params(self, wildcards) -> dict:
        """The run Figure 6 or 7 shows and the files it reads."""
        d, m, s = self.figure6_run() if wildcards.n == "6" else self.runs()[0]
        return {"dataset": d, "model": m, "seed": s, "data_dir": self.data_dir(d),
                "files": self.run_figure_inputs(wildcards)}

    def figure7_inputs(self, wildcards) -> dict:
        d, m, s = self.runs()[0]
        return {**self.run_files(d, m, s), "scores": f"{self.run_dir(d, m, s)}/scores.parquet"}

    def run_figure_inputs(self, wildcards) -> dict:
        """Figure 6: one run's transfer files; Figure 7: one run's scores and caches."""
        return self.figure6_inputs(wildcards) if wildcards.n == "6" else \
            self.figure7_inputs(wildcards)

    def report_settings(self) -> dict:
        return pick(self.section, "iou_top_fraction", "frameworks", "interpreters",
                    "variants", "edge_stages", "smoothing", "schedules")

    def example_settings(self) -> dict:
        return pick(self.section, "examples")

    def figure_settings(self, wildcards) -> dict:
        """Figure 6 reads the transfer subset's settings, Figure 7 the outlier count."""
        if wildcards.n == "6":
            return {"transfer": pick(self.section["transfer"], "n_samples", "seed")}
        return {"outliers": self.section["outliers"]}

    def caption(self, wildcards) -> str:
        name = wildcards.get("name")
        return CAPTIONS[name] if name else CAPTIONS[f"fig{wildcards.n}"]

    def targets(self) -> list[str]:
        if not self.runs():
            return []
        tables = TABLES + (TRANSFER_TABLES if self.transfer_enabled() else ()) + tuple(
            self.defense_tables())
        out = [p for t in tables for p in self.table(f"advedge_{t}")]
        figs = [n for n, (d, _) in BOX_FIGURES.items() if self.runs(d)]
        figs += [n for n, d in EXAMPLE_FIGURES.items() if d is None or self.runs(d)]
        fig6 = self.transfer_enabled() and any(a.startswith("pgd-") for a in
                                               self.transfer_attacks())   # Fig. 6 shows PGD
        figs += (["6"] if fig6 else []) + ["7"]
        return out + [p for n in figs for p in self.figure(f"advedge_fig{n}")]
