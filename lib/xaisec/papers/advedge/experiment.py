"""AdvEdge paper: the PGD attacks ADV2, AdvEdge and AdvEdge+ on four interpreters, their maps
and per-sample scores (AdvEdge paper, Sections IV-V; docs/settings.md#advedge).

Pipeline (one function per workflow rule):

1. :func:`make_inputs`: the first ``n_images`` test images of a seeded random order that the
   model classifies correctly (Sec. V-A), with seeded targets y_t = (y + randint(1, C)) mod C.
2. :func:`train_rts`: the RTS saliency model of one data set and model (Sec. IV-E), trained
   once and loaded by every later job.
3. :func:`benign_maps`: each interpreter's maps of the benign images for their label, cached.
4. :func:`run_attack`: one attack (framework x interpreter x variant, or the plain PGD
   reference) on every input; adversarial images (float32) and per-sample records.
5. :func:`adversarial_maps`: an interpreter's maps of one attack's images for the predicted
   class, cached.
6. :func:`score_run`: per sample and attack: success, confidence, time, iterations, the L1
   and top-k IoU of the maps against the benign ones and the noise rate 1 - SSIM. Tables and
   figures (:mod:`xaisec.papers.advedge.report`) read only these scores and the caches.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xaisec import io
from xaisec.cache import ExplanationSet, read_explanations, write_explanations
from xaisec.data import datasets
from xaisec.evaluate import eval_indices
from xaisec.tensors import nhwc_to_tensor, to_float

INTERPRETERS = ("grad", "cam", "rts", "mask")


# ---------------------------------------------------------------- inputs

def _test_images(data_dir, idx=None) -> tuple[torch.Tensor, np.ndarray]:
    test = datasets.load_split(Path(data_dir) / "test.npz")
    if idx is None:
        return test, None
    return to_float(nhwc_to_tensor(test.x[idx])), test.y[idx].astype(np.int64)


def make_inputs(model_path, data_dir, out_path, settings: dict, device="cpu",
                meta: dict | None = None) -> dict:
    """Scan the test split in a seeded random order and keep the first ``n_images`` correctly
    classified images; draw their targets (seeded). Writes ``sample``, ``label``, ``target``."""
    device = torch.device(device)
    model, _ = io.load_model(model_path, device)
    model.eval()
    test = datasets.load_split(Path(data_dir) / "test.npz")
    order = eval_indices(len(test.x), None, settings["sample_seed"])
    n, bs = int(settings["n_images"]), int(settings["batch_size"])
    keep, scanned, num_classes = [], 0, int(test.y.max() + 1)
    with torch.no_grad():
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            x = to_float(nhwc_to_tensor(test.x[idx])).to(device)
            logits = model(x)
            num_classes = max(num_classes, logits.shape[1])
            pred = logits.argmax(1).cpu().numpy()
            keep.extend(idx[pred == test.y[idx]].tolist())
            scanned += len(idx)
            if len(keep) >= n:
                break
    keep = np.asarray(keep[:n], dtype=np.int64)
    if len(keep) < n:
        print(f"warning: only {len(keep)} correctly classified test images (asked {n})")
    label = test.y[keep].astype(np.int64)
    rng = np.random.default_rng(settings["target_seed"])
    target = (label + rng.integers(1, num_classes, size=len(label))) % num_classes
    with io.atomic_path(out_path, suffix=".npz") as tmp:
        np.savez(tmp, sample=keep, label=label, target=target.astype(np.int64))
    return {**(meta or {}), "n_images": int(len(keep)), "scanned": scanned,
            "accuracy_scanned": float(len(keep) / max(scanned, 1)) if len(keep) < n else None,
            "num_classes": num_classes}


def load_inputs(inputs_path, data_dir) -> dict:
    with np.load(inputs_path) as f:
        arr = {k: f[k] for k in f.files}
    x, _ = _test_images(data_dir, arr["sample"])
    return {**arr, "x": x}


# ---------------------------------------------------------------- interpreters

def build_interpreter(name: str, model: torch.nn.Module, settings: dict, rts_path=None,
                      device=None):
    """The explainer of interpreter ``name`` with its config section (``advedge.<name>``):
    Grad (:class:`~xaisec.explainers.adv2grad.Adv2Grad`), CAM at feature resolution, RTS from
    its trained checkpoint, MASK (Fong-Vedaldi solver)."""
    from xaisec.explainers import make_explainer

    s = settings.get(name, {})
    if name == "grad":
        return make_explainer("adv2grad", model, of=s.get("of", "logit"), pool=s.get("pool"))
    if name == "cam":
        return make_explainer("cam", model, upsample=False)
    if name == "rts":
        from xaisec.explainers.rts import load_rts

        if rts_path is None:
            raise ValueError("the RTS interpreter needs its trained model (rule advedge_train_rts)")
        saliency = load_rts(rts_path, model, map_location=device)
        return make_explainer("rts", model, saliency=saliency)
    if name == "mask":
        return make_explainer("mask", model, **s.get("solver", {}))
    raise ValueError(f"unknown interpreter {name!r}; known: {', '.join(INTERPRETERS)}")


def train_rts(model_path, data_dir, out_path, settings: dict, device="cpu",
              meta: dict | None = None) -> dict:
    """Train the RTS saliency model of one classifier on its training split (or a seeded
    subset, ``train_subset``) and save it with its training history."""
    from xaisec.explainers.rts import SaliencyModel, save_rts
    from xaisec.explainers.rts import train_rts as fit

    s = settings["rts_training"]
    device = torch.device(device)
    model, model_meta = io.load_model(model_path, device)
    model.eval()
    train = datasets.load_split(Path(data_dir) / "train.npz")
    idx = eval_indices(len(train.x), s.get("train_subset"), s.get("seed", 0))
    x = to_float(nhwc_to_tensor(train.x[idx]))
    y = torch.as_tensor(train.y[idx], dtype=torch.long)
    num_classes = int(model(x[:1].to(device)).shape[1])
    torch.manual_seed(int(s.get("seed", 0)))
    sal = SaliencyModel(model, num_classes, encoder_layers=s.get("encoder_layers")).to(device)
    history = fit(sal, x, y, phases=s["phases"], lr=s["lr"], weight_decay=s["weight_decay"],
                  seed=int(s.get("seed", 0)), device=device)
    record = {**(meta or {}), "train_images": int(len(idx)), "settings": s,
              "model_fingerprint": model_meta.get("fingerprint"),
              "final": history[-1] if history else None}
    save_rts(out_path, sal, record)
    return {**record, "history": history}


# ---------------------------------------------------------------- maps

def _write_maps(out_path, maps: torch.Tensor, inp: dict, pred, conf, target, meta: dict):
    es = ExplanationSet(maps=maps.float().cpu().numpy().astype(np.float32),
                        sample=inp["sample"], label=inp["label"],
                        pred=np.asarray(pred, dtype=np.int64),
                        confidence=np.asarray(conf, dtype=np.float32),
                        target=np.asarray(target, dtype=np.int64), meta=meta)
    write_explanations(out_path, es)


def _explain(expl, x: torch.Tensor, target: np.ndarray, batch_size: int, device, desc: str):
    from xaisec.explainers import explain_batches

    return explain_batches(expl, x, torch.as_tensor(target), batch_size=batch_size,
                           device=device, out_device="cpu", progress=True, desc=desc)


def benign_maps(model_path, data_dir, inputs_path, interp: str, out_path, settings: dict,
                device="cpu", rts_path=None, meta: dict | None = None) -> None:
    """Interpreter ``interp``'s maps of the benign inputs for their labels (m_t of eq. 5)."""
    device = torch.device(device)
    model, mm = io.load_model(model_path, device)
    model.eval()
    inp = load_inputs(inputs_path, data_dir)
    expl = build_interpreter(interp, model, settings, rts_path, device)
    res = _explain(expl, inp["x"], inp["label"], settings["batch_size"], device,
                   f"benign {interp}")
    _write_maps(out_path, res.maps, inp, res.pred.numpy(), res.confidence.numpy(),
                inp["label"], {**(meta or {}), "paper": "advedge", "interpreter": interp,
                               "images": "benign", "settings": settings.get(interp, {}),
                               "model_fingerprint": mm.get("fingerprint")})


def adversarial_maps(model_path, data_dir, inputs_path, adv_path, interp: str, out_path,
                     settings: dict, device="cpu", rts_path=None,
                     meta: dict | None = None) -> None:
    """Interpreter ``interp``'s maps of one attack's adversarial images for the class the
    model predicts on them (y_t where the attack succeeded)."""
    device = torch.device(device)
    model, mm = io.load_model(model_path, device)
    model.eval()
    inp = load_inputs(inputs_path, data_dir)
    adv = load_adversarial(adv_path, inp["sample"])
    inp = _align(inp, adv["sample"], adv_path)
    expl = build_interpreter(interp, model, settings, rts_path, device)
    res = _explain(expl, adv["x"], adv["prediction"], settings["batch_size"], device,
                   f"adversarial {interp}")
    _write_maps(out_path, res.maps, inp, res.pred.numpy(), res.confidence.numpy(),
                adv["prediction"], {**(meta or {}), "paper": "advedge", "interpreter": interp,
                                    "images": "adversarial", "attack": adv["meta"],
                                    "settings": settings.get(interp, {}),
                                    "model_fingerprint": mm.get("fingerprint")})


def successful_subset(success: np.ndarray, n: int, seed: int, key: str) -> np.ndarray:
    """Sorted positions of up to ``n`` random successful inputs of one attack, seeded by
    ``seed`` and ``key`` (the attack id, plus the study's name where several studies draw)."""
    ok = np.flatnonzero(np.asarray(success, dtype=bool))
    rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
    return np.sort(rng.choice(ok, size=min(int(n), len(ok)), replace=False))


def transfer_subset(success: np.ndarray, n: int, seed: int, attack: str) -> np.ndarray:
    """The transfer study's draw (Sec. V-F: 100 random successful adversarial inputs per
    interpreter), keyed by the attack id."""
    return successful_subset(success, n, seed, attack)


def transfer_maps(model_path, data_dir, inputs_path, adv_path, out_dir, settings: dict,
                  device="cpu", rts_path=None, meta: dict | None = None) -> dict:
    """Every other interpreter's maps of the transfer subset (:func:`transfer_subset`) of one
    attack, for the predicted class (= y_t): ``out_dir/{interpreter}.parquet`` each, the
    folder written atomically."""
    device = torch.device(device)
    model, mm = io.load_model(model_path, device)
    model.eval()
    inp = load_inputs(inputs_path, data_dir)
    adv = load_adversarial(adv_path, inp["sample"])
    aid = Path(adv_path).parent.name
    source = adv["meta"]["interpreter"]
    tr = settings["transfer"]
    pos = transfer_subset(adv["success"], tr["n_samples"], tr["seed"], aid)
    sub = {k: inp[k][pos] for k in ("sample", "label")}
    targets = [i for i in settings["interpreters"] if i != source]
    # no successful input: empty caches, their map shape taken from the first input's map
    take = pos if len(pos) else np.arange(min(1, len(adv["x"])))
    with io.atomic_dir(out_dir) as tmp:
        for interp in targets:
            expl = build_interpreter(interp, model, settings, rts_path, device)
            res = _explain(expl, adv["x"][take], adv["prediction"][take],
                           settings["batch_size"], device, f"transfer {aid} -> {interp}")
            k = len(pos)
            _write_maps(Path(tmp) / f"{interp}.parquet", res.maps[:k], sub,
                        res.pred[:k].numpy(), res.confidence[:k].numpy(), adv["prediction"][pos],
                        {**(meta or {}), "paper": "advedge", "interpreter": interp,
                         "images": "transfer", "attack": adv["meta"], "transfer": tr,
                         "settings": settings.get(interp, {}),
                         "model_fingerprint": mm.get("fingerprint")})
    return {"attack": aid, "n": int(len(pos)), "n_success": int(np.sum(adv["success"])),
            "targets": targets}


def _read_run(files: dict, data_dir):
    """A run's inputs, its benign map caches ({interpreter: ExplanationSet}) and, lazily, each
    attack's id and images (``files`` as :meth:`AdvedgeTargets.run_files` names them)."""
    inp = load_inputs(files["inputs"], data_dir)
    benign = {k[len("benign_"):]: read_explanations(p) for k, p in files.items()
              if k.startswith("benign_")}
    attacks = ((k[len("adv_"):], load_adversarial(p, inp["sample"])) for k, p in files.items()
               if k.startswith("adv_"))
    return inp, benign, attacks


def score_transfer(files: dict, data_dir, out_path, settings: dict, meta: dict) -> pd.DataFrame:
    """Table II's per-sample rows of one run: for each attack's transfer subset, the L1 of
    every interpreter's map against that interpreter's benign map (``diagonal``: the attacked
    interpreter itself, read from the attack's own map cache on the same inputs)."""
    inp, benign, attacks = _read_run(files, data_dir)
    tr = settings["transfer"]
    frames = []
    for aid, adv in attacks:
        source = aid.split("-")[1]
        pos = transfer_subset(adv["success"], tr["n_samples"], tr["seed"], aid)
        own = read_explanations(files[f"maps_{aid}_{source}"])
        if not np.array_equal(own.sample, adv["sample"]):
            raise ValueError(f"{files[f'maps_{aid}_{source}']}: cached samples differ from the "
                             "attack's; rerun")
        maps = {source: own.maps[pos]}
        for target in settings["interpreters"]:
            if target == source:
                continue
            mp = Path(files[f"transfer_{aid}"]) / f"{target}.parquet"
            es = read_explanations(mp)
            if not np.array_equal(es.sample, inp["sample"][pos]):
                raise ValueError(f"{mp}: cached samples are not the transfer subset; rerun")
            maps[target] = es.maps
        frames += [_transfer_rows(meta, aid, t, pos, inp, adv, m, benign)
                   for t, m in maps.items()]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c: [] for c in (*meta, *TRANSFER_COLUMNS)})
    io.write_parquet(df, out_path)
    return df


TRANSFER_COLUMNS = ("framework", "source", "variant", "target", "diagonal", "sample", "l1",
                    "n_success", "edge_stages")


def _transfer_rows(meta, aid, target, pos, inp, adv, maps, benign) -> pd.DataFrame:
    from xaisec.metrics.similarity import l1_distance

    framework, source, variant = aid.split("-", 2)
    return pd.DataFrame({
        **meta, "framework": framework, "source": source, "variant": variant,
        "target": target, "diagonal": target == source, "sample": inp["sample"][pos],
        "l1": l1_distance(maps, benign[target].maps[pos]),
        "n_success": int(np.sum(adv["success"])),
        "edge_stages": adv["meta"]["settings"].get("edge_stages", "n/a")})


# ---------------------------------------------------------------- attacks

#: the notebooks' per-variant schedule differences (``schedules: code``;
#: docs/settings.md#advedge, "schedules per variant")
CODE_SCHEDULES = {("grad", "advedge+"): {"stage1_steps": 200, "keep_best_every": 2},
                  ("cam", "advedge+"): {"stage2": [{"c": [5.0, 10.0], "steps": 1000}]}}


def _phi(interp: str, settings: dict) -> float:
    """AdvEdge+'s threshold for ``interp`` (``advedge.phi``: per interpreter, else default)."""
    return settings["phi"].get(interp, settings["phi"]["default"])


def attack_kwargs(interp: str, variant: str, settings: dict) -> dict:
    """InterpretationPGD's arguments for one interpreter and variant from the ``advedge``
    section: the interpreter's schedule (with the notebooks' per-variant step counts under
    ``schedules: code``), the shared switches, and phi (``phi.rts`` for RTS)."""
    s = dict(settings[interp])
    kw = {k: s[k] for k in ("stage1_steps", "stage2", "keep_best", "keep_best_every",
                            "best_threshold", "step", "max_step", "search", "search_steps",
                            "confidence", "beta") if k in s}
    if settings["schedules"] == "code":
        kw.update(CODE_SCHEDULES.get((interp, variant), {}))
    kw.update(eps=settings["eps"], alpha=settings["alpha"], variant=variant,
              phi=_phi(interp, settings), edge_stages=settings["edge_stages"],
              smoothing=settings["smoothing"])
    return kw


def build_term(interp: str, explainer, settings: dict):
    from xaisec.attacks.interpretation import make_term

    s = settings[interp]
    kw = {}
    if interp == "rts":
        kw["encoder_weight"] = s.get("encoder_weight", 0.2)
    if interp == "mask":
        kw.update({k: s[k] for k in ("inner_steps", "after_steps", "resolve_every",
                                     "resolve_iterations") if k in s})
    return make_term(interp, explainer, **kw)


#: the attack class of each framework (registry names)
FRAMEWORK_ATTACKS = {"pgd": "advedge_pgd", "cw": "advedge_cw", "stadv": "advedge_stadv"}
#: the framework-wide keys of ``advedge.cw`` / ``advedge.stadv`` (the rest are interpreters)
FRAMEWORK_KEYS = {"cw": ("lr", "amsgrad", "cls_weight", "kappa", "dist_weight", "smoothing"),
                  "stadv": ("lr", "amsgrad", "tau", "flow_init", "stage1_loss", "kappa",
                            "edge_on", "neighbours", "smoothing")}
SCHEDULE_KEYS = ("stage1_steps", "stage2", "prd_weight", "lr", "map_reduction", "keep_best",
                 "keep_best_every", "best_threshold")


def framework_kwargs(framework: str, interp: str, variant: str, settings: dict) -> dict:
    """The C&W or StAdv attack's arguments for one interpreter and variant: the framework's
    own keys, the interpreter's schedule in it (``advedge.<framework>.<interpreter>``), the
    shared edge settings."""
    f = settings[framework]
    kw = {k: f[k] for k in FRAMEWORK_KEYS[framework] if k in f}
    sched = f[interp]
    kw.update({k: sched[k] for k in SCHEDULE_KEYS if sched.get(k) is not None})
    kw.update(variant=variant, phi=_phi(interp, settings),
              edge_stages=settings["edge_stages"])
    return kw


def defended_model(model, defense: str, settings: dict):
    """The undefended ``model`` behind input defense ``defense`` (``advedge.defenses.input``
    settings); bit squeezing passes gradients straight through (BPDA) for a white-box
    attacker."""
    from xaisec.defenses.input import with_input_defense

    return with_input_defense(model, defense, bpda=defense == "bitsqueeze",
                              **settings["input"][defense])


def run_attack(model_path, data_dir, inputs_path, framework: str, interp: str, variant: str,
               out_path, settings: dict, device="cpu", rts_path=None,
               meta: dict | None = None, input_defense: str | None = None) -> dict:
    """One attack on every input, in batches; writes ``adv`` (float32 NCHW) and the records
    (prediction, confidence, success, iterations, time_s) with the settings that produced
    them. ``interp == "none"``: the plain targeted PGD reference (``reference_steps``).
    ``input_defense``: attack the model behind this input defense (white-box; settings in
    ``settings["input"]``, :func:`defended_model`)."""
    from xaisec.attacks import PGD, AttackResult, make_attack

    if framework not in FRAMEWORK_ATTACKS:
        raise ValueError(f"unknown framework {framework!r}; known: {', '.join(FRAMEWORK_ATTACKS)}")
    device = torch.device(device)
    model, mm = io.load_model(model_path, device)
    model.eval()
    if input_defense is not None:
        model = defended_model(model, input_defense, settings).eval()
    inp = load_inputs(inputs_path, data_dir)
    k = None
    if interp == "none":
        if framework != "pgd":
            raise ValueError("the plain reference is PGD's (pgd-none-plain)")
        attack = PGD(model, eps=settings["eps"], alpha=settings["alpha"],
                     steps=settings["reference_steps"], random_start=False)
        used = {"steps": settings["reference_steps"], "eps": settings["eps"],
                "alpha": settings["alpha"]}
    else:
        if framework == "pgd":
            kw = attack_kwargs(interp, variant, settings)
            k = settings[interp].get("max_images")
        else:
            kw = framework_kwargs(framework, interp, variant, settings)
            k = settings[framework][interp].get("max_images")
        expl = build_interpreter(interp, model, settings, rts_path, device)
        attack = make_attack(FRAMEWORK_ATTACKS[framework], model,
                             term=build_term(interp, expl, settings), **kw)
        used = {**kw, "interpreter": settings[interp], "schedules": settings["schedules"]}
    inp = _first(inp, k)
    x, y, t = inp["x"], torch.as_tensor(inp["label"]), torch.as_tensor(inp["target"])
    bs = int(settings["batch_size"])
    parts = []
    for i in tqdm(range(0, len(x), bs), desc=f"{framework}-{interp}-{variant}", leave=False):
        parts.append(attack.run(x[i:i + bs].to(device), y[i:i + bs].to(device),
                                target=t[i:i + bs].to(device)).to("cpu"))
    res = AttackResult.cat(parts)
    rec = res.records()
    linf = (res.adv - x).flatten(1).abs().amax(1).numpy()
    if input_defense is not None:
        used = {**used, "input_defense": {input_defense: settings["input"][input_defense]}}
    attack_meta = {**(meta or {}), "framework": framework, "interpreter": interp,
                   "variant": variant, "settings": used,
                   "model_fingerprint": mm.get("fingerprint")}
    with io.atomic_path(out_path, suffix=".npz") as tmp:
        np.savez(tmp, sample=inp["sample"], adv=res.adv.numpy().astype(np.float32),
                 linf=linf, meta=np.array(io.json_dumps(attack_meta)),
                 **{k: v for k, v in rec.items()})
    asr = float(rec["success"].mean()) if len(x) else float("nan")
    return {**attack_meta, "n": int(len(x)), "asr": asr,
            "seconds_per_input": float(rec["time_s"].mean()) if len(x) else None,
            "linf_max": float(linf.max()) if len(x) else None}


def _first(inp: dict, k: int | None) -> dict:
    """The first ``k`` inputs (all when ``k`` is None): an interpreter's ``max_images``."""
    if k is None:
        return inp
    return {key: (v[:k] if key in ("sample", "label", "target", "x") else v)
            for key, v in inp.items()}


def _align(inp: dict, sample: np.ndarray, what) -> dict:
    """The inputs restricted to ``sample`` (an attack's images are a prefix of the inputs)."""
    n = len(sample)
    if not np.array_equal(inp["sample"][:n], sample):
        raise ValueError(f"{what}: its samples are not the run's inputs; rerun the attack")
    return _first(inp, n)


def load_adversarial(path, sample=None) -> dict:
    """An attack's images and records; ``sample``: check they belong to these inputs."""
    import json

    with np.load(path) as f:
        arr = {k: f[k] for k in f.files}
    if sample is not None and not np.array_equal(sample[:len(arr["sample"])], arr["sample"]):
        raise ValueError(f"{path}: its samples are not the run's inputs; rerun the attack")
    arr["meta"] = json.loads(str(arr["meta"]))
    arr["x"] = torch.from_numpy(arr.pop("adv"))
    return arr


# ---------------------------------------------------------------- scores

def score_run(files: dict, data_dir, out_path, settings: dict, meta: dict) -> pd.DataFrame:
    """Per-sample scores of every attack of one run (``files``: the run's inputs, benign map
    caches, adversarial images and map caches, as :meth:`AdvedgeTargets.run_files` names
    them), written to ``out_path`` (Parquet)."""
    from xaisec.metrics.similarity import l1_distance, noise_rate, topk_iou

    inp, benign, attacks = _read_run(files, data_dir)
    frac = float(settings["iou_top_fraction"])
    frames = []
    for aid, adv in attacks:
        framework, attacked, variant = aid.split("-", 2)
        path = files[f"adv_{aid}"]
        sub = _align(inp, adv["sample"], path)
        n = len(sub["sample"])
        noise = noise_rate(sub["x"], adv["x"])
        for mk, mp in files.items():
            if not mk.startswith(f"maps_{aid}_"):
                continue
            interp = mk[len(f"maps_{aid}_"):]
            es, b = read_explanations(mp), benign[interp]
            if not (np.array_equal(es.sample, sub["sample"])
                    and np.array_equal(b.sample, inp["sample"])):
                raise ValueError(f"{mp}: cached samples differ from the inputs; rerun")
            b_maps = b.maps[:n]
            frames.append(pd.DataFrame({
                **meta, "framework": framework, "attacked": attacked,
                "interpreter": interp, "variant": variant,
                "sample": sub["sample"], "label": sub["label"], "target": sub["target"],
                "prediction": adv["prediction"], "success": adv["success"].astype(bool),
                "confidence": adv["confidence"], "iterations": adv["iterations"],
                "time_s": adv["time_s"], "linf": adv["linf"], "noise": noise,
                "l1": l1_distance(es.maps, b_maps), "iou": topk_iou(es.maps, b_maps, frac),
                "iou_top_fraction": frac,
                "edge_stages": adv["meta"]["settings"].get("edge_stages", "n/a"),
                "smoothing": adv["meta"]["settings"].get("smoothing", "n/a"),
                "schedules": settings["schedules"],
            }))
    df = pd.concat(frames, ignore_index=True)
    io.write_parquet(df, out_path)
    return df
