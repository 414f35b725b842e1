"""AdvEdge paper, part 3: what the defense, detector, robust-training and black-box jobs read
and write (torch-free; planning time). Mixed into :class:`~xaisec.papers.advedge.targets.
AdvedgeTargets`, which provides the runs, attacks and paths."""
from __future__ import annotations

from xaisec.workflow.plan import PlanError, pick

#: part 3's tables: Table III (black-box stand-in), IV-V (detector), VI (robust training), XI
DEFENSE_TABLES = ("table3", "table4", "table5", "table6", "table11")
DEFENSE_CAPTIONS = {
    "table11": "AdvEdge Table XI: attack success rate (%) under median smoothing (MS), bit "
               "squeezing (BS) and adversarial training (AT), for an attacker who targets the "
               "undefended model (oblivious) and one who attacks the defended system "
               "(white-box); the numbers the paper's Sec. V-G quotes beside.",
    "table4": "AdvEdge Table IV: accuracy of the two-interpreter detector (2 channels, and 2 "
              "plus their product); the paper's values beside.",
    "table5": "AdvEdge Table V: accuracy of the three-interpreter detector; the paper's values "
              "beside.",
    "table6": "AdvEdge Table VI: accuracy under PGD and Kendall's tau between benign and "
              "adversarial CAM maps per eps, normal against interpretation-robust training; "
              "the paper's values beside.",
    "table3": "AdvEdge Table III stand-in: AdvEdge inputs of a surrogate model sent to a "
              "different target model queried as a black box (the paper: brain-MRI models; "
              "here: the project's data and architectures).",
}


class DefenseTargets:
    """Planning of AdvEdge part 3 (needs ``self.section``, ``self.runs``, ``self.run_dir``,
    ``self.attacks``, ``self.attack_id``, ``self.explainer_keys``, ``self.model_dir`` and
    ``self.config`` of AdvedgeTargets, which this module does not import)."""

    # ------------------------------------------------------------ Table XI

    @property
    def defenses(self) -> dict:
        return self.section.get("defenses") or {}

    def at_model(self, model: str) -> str | None:
        """The adversarially trained counterpart of ``model`` (``defenses.adversarial``)."""
        return (self.defenses.get("adversarial") or {}).get(model)

    def defense_names(self, model: str) -> list[str]:
        """The defenses of Table XI for one model: the input ones, then AT if it has one."""
        return list(self.defenses.get("input", {})) + (["adversarial"] if self.at_model(model)
                                                       else [])

    def white_box_attacks(self) -> list[str]:
        """The attacks repeated against each defended system (``defenses.white_box``)."""
        if "white_box" not in self.defenses.get("knowledge", []):
            return []
        wb = self.defenses.get("white_box") or {}
        return [a for a in self.attacks() if a.split("-")[1] != "none"
                and a.split("-")[0] in wb.get("frameworks", [])
                and a.split("-")[1] in wb.get("interpreters", [])
                and a.split("-", 2)[2] in wb.get("variants", [])]

    def defense_files(self, d, m, s) -> dict:
        rd = self.run_dir(d, m, s)
        files = {"model": f"{self.model_dir(d, m, s)}/clean/model.pt",
                 "inputs": f"{rd}/inputs.npz"}
        if self.at_model(m):
            files["at_model"] = f"{self.model_dir(d, self.at_model(m), s)}/clean/model.pt"
        for aid in self.attacks():
            if aid.split("-")[1] != "none":
                files[f"adv_{aid}"] = f"{rd}/{aid}/adv.npz"
        for defense in self.defense_names(m):
            for aid in self.white_box_attacks():
                files[f"wb_{defense}__{aid}"] = f"{rd}/defended/{defense}/{aid}/adv.npz"
        return files

    def defense_inputs(self, wildcards) -> dict:
        return self.defense_files(wildcards.dataset, wildcards.model, wildcards.seed)

    def defended_model(self, wildcards) -> dict:
        """The model a white-box attack on a defended system reads: AT's own checkpoint, or
        the undefended one (the input defense is put in front of it)."""
        d, m, s = wildcards.dataset, wildcards.model, wildcards.seed
        if wildcards.advdef == "adversarial":
            if not self.at_model(m):
                raise PlanError(f"no adversarially trained counterpart of {m!r} "
                                "(advedge.defenses.adversarial)")
            return {"model": f"{self.model_dir(d, self.at_model(m), s)}/clean/model.pt"}
        if wildcards.advdef not in self.defenses.get("input", {}):
            raise PlanError(f"unknown defense {wildcards.advdef!r}; configured: "
                            f"{', '.join(self.defense_names(m))}")
        return {"model": f"{self.model_dir(d, m, s)}/clean/model.pt"}

    def defended_attack_settings(self, wildcards) -> dict:
        out = self.attack_settings(wildcards)
        if wildcards.advdef != "adversarial":
            out["input"] = {wildcards.advdef: self.defenses["input"][wildcards.advdef]}
        return out

    def defense_settings(self, wildcards) -> dict:
        return {**pick(self.section, "batch_size"), **pick(self.defenses, "input")}

    def defense_score_files(self) -> list[str]:
        return [f"{self.run_dir(*r)}/defenses.parquet" for r in self.runs()]

    # ------------------------------------------------------------ Tables IV, V

    @property
    def detector(self) -> dict:
        return self.section.get("detector") or {}

    def detector_interpreters(self) -> list[str]:
        """``detector.interpreters``, default (null) ``advedge.interpreters``."""
        own = self.detector.get("interpreters")
        return list(self.section.get("interpreters", []) if own is None else own)

    def detector_enabled(self) -> bool:
        return len(self.detector_interpreters()) >= 2

    def detector_attacks(self) -> list[str]:
        """The attacks whose inputs feed the detector: one per detector interpreter."""
        det = self.detector
        ids = [self.attack_id(det["framework"], i, det["variant"])
               for i in self.detector_interpreters()]
        missing = [a for a in ids if a not in self.attacks()]
        if missing:
            raise PlanError(f"advedge.detector needs the attacks {', '.join(missing)}, which are "
                            "not configured (advedge.frameworks, interpreters, variants)")
        return ids

    def detector_files(self, d, m, s, maps_only: bool = False) -> dict:
        rd = self.run_dir(d, m, s)
        files = {"inputs": f"{rd}/inputs.npz"}
        for aid in self.detector_attacks():
            files[f"adv_{aid}"] = f"{rd}/{aid}/adv.npz"
        if maps_only:
            if "rts" in self.detector_interpreters():
                files["rts"] = f"{rd}/rts.pt"
            return files
        for i in self.detector_interpreters():
            files[f"benign_{i}"] = f"{rd}/benign/{i}.parquet"
        for aid in self.detector_attacks():
            files[f"maps_{aid}_{aid.split('-')[1]}"] = f"{rd}/{aid}/maps-{aid.split('-')[1]}.parquet"
        files["detector"] = f"{rd}/detector"
        b = self.detector.get("backbone") or {}
        if not b.get("weights"):
            key = b["imagenet_model"] if d == "imagenet" else b["model"]
            files["backbone"] = f"{self.model_dir(d, key, s)}/clean/model.pt"
        return files

    def detector_map_inputs(self, wildcards) -> dict:
        return self.detector_files(wildcards.dataset, wildcards.model, wildcards.seed, True)

    def detector_inputs(self, wildcards) -> dict:
        return self.detector_files(wildcards.dataset, wildcards.model, wildcards.seed)

    def detector_map_settings(self, wildcards) -> dict:
        a = self.section
        out = pick(a, "batch_size")
        for i in self.detector_interpreters():
            out[i] = pick(a[i], *self.explainer_keys[i])
        out["detector"] = {**pick(self.detector, "n_samples", "seed"),
                           "interpreters": self.detector_interpreters()}
        return out

    def detector_settings(self, wildcards) -> dict:
        return {"detector": {**self.detector, "interpreters": self.detector_interpreters()}}

    def detector_score_files(self) -> list[str]:
        return [f"{self.run_dir(*r)}/detector.parquet" for r in self.runs()]

    # ------------------------------------------------------------ Table VI

    @property
    def robust(self) -> dict:
        return self.section.get("robust") or {}

    def robust_datasets(self) -> list[str]:
        """``robust.datasets``, default (null) the AdvEdge data sets standing for CIFAR-10."""
        own = self.robust.get("datasets")
        if own is not None:
            return list(own)
        return [d for d in self.section.get("datasets", []) if self.paper_dataset(d) == "cifar10"]

    def robust_runs(self) -> list[tuple]:
        r = self.robust
        if not r.get("normal") or not r.get("robust") or not self.section.get("models"):
            return []
        return [(d, s) for d in self.robust_datasets() for s in self.section.get("seeds", [])]

    def robust_dir(self, d, s) -> str:
        return f"{self.R}/{d}/advedge_robust/seed{s}"

    def robust_inputs(self, wildcards) -> dict:
        r, d, s = self.robust, wildcards.dataset, wildcards.seed
        return {t: f"{self.model_dir(d, r[t], s)}/clean/model.pt" for t in ("normal", "robust")}

    def robust_settings(self, wildcards) -> dict:
        return {"robust": pick(self.robust, "normal", "robust", "eps", "n_images", "seed",
                               "steps", "step_fraction", "batch_size")}

    def robust_score_files(self) -> list[str]:
        return [f"{self.robust_dir(d, s)}/robust.parquet" for d, s in self.robust_runs()]

    # ------------------------------------------------------------ Table III stand-in

    @property
    def blackbox(self) -> dict:
        return self.section.get("blackbox") or {}

    def blackbox_runs(self) -> list[tuple]:
        b = self.blackbox
        if not b.get("target"):
            return []
        return [(d, m, s) for d, m, s in self.runs() if m == b["surrogate"]]

    def blackbox_inputs(self, wildcards) -> dict:
        b = self.blackbox
        d, m, s = wildcards.dataset, wildcards.model, wildcards.seed
        if b["attack"] not in self.attacks():
            raise PlanError(f"advedge.blackbox.attack {b['attack']!r} is not a configured "
                            "attack")
        rd = self.run_dir(d, m, s)
        return {"inputs": f"{rd}/inputs.npz", "adv": f"{rd}/{b['attack']}/adv.npz",
                "surrogate_model": f"{self.model_dir(d, m, s)}/clean/model.pt",
                "target_model": f"{self.model_dir(d, b['target'], s)}/clean/model.pt"}

    def blackbox_settings(self, wildcards) -> dict:
        return {**pick(self.section, "batch_size"), "blackbox": {
            **pick(self.blackbox, "surrogate", "target", "attack", "n_samples", "seed"),
            "iou_top_fraction": self.section["iou_top_fraction"]}}

    def blackbox_score_files(self) -> list[str]:
        t = self.blackbox.get("target")
        return [f"{self.run_dir(*r)}/blackbox-{t}.parquet" for r in self.blackbox_runs()]

    # ------------------------------------------------------------ tables

    def defense_table_inputs(self, name: str) -> list[str]:
        files = {"table11": self.defense_score_files, "table6": self.robust_score_files,
                 "table3": self.blackbox_score_files}.get(name, self.detector_score_files)()
        if not files:
            raise PlanError(f"AdvEdge {name} has nothing to read: configure advedge."
                            f"{ {'table6': 'robust', 'table3': 'blackbox'}.get(name, 'detector')}")
        return files

    def defense_tables(self) -> list[str]:
        out = ["table11"] if self.runs() else []
        if self.runs() and self.detector_enabled():
            out += ["table4"] + (["table5"] if len(self.detector_interpreters()) >= 3 else [])
        out += ["table6"] if self.robust_runs() else []
        out += ["table3"] if self.blackbox_runs() else []
        return out
