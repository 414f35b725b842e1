"""AdvEdge paper, part 3: the attacks against defenses and the paper's countermeasures
(Sec. V-G, Sec. VI-A, VI-B; docs/settings.md#advedge). One function per workflow rule:

* :func:`score_defenses` (Table XI): the attack success rate of every attack under median
  smoothing, bit squeezing and adversarial training, for an attacker who targets the
  undefended model (``oblivious``: its adversarial inputs are fed to the defended system) and
  one who attacks the defended system itself (``white_box``: the attacks of rule
  ``advedge_defended_attack``, through the input defense with BPDA for bit squeezing, or on
  the adversarially trained model);
* :func:`detector_maps` and :func:`score_detector` (Tables IV, V): every detector
  interpreter's maps of each detector attack's successful inputs, cached; then the stacked-map
  detector (:mod:`xaisec.defenses.detector`) per combination of interpreters, trained and
  tested on a split by source image;
* :func:`score_robustness` (Table VI): accuracy under PGD and Kendall's tau between benign and
  adversarial CAM maps per eps, for a normally and an interpretation-robustly trained model;
* :func:`score_blackbox` (Table III stand-in): a surrogate model's AdvEdge inputs sent to a
  different target model queried as a black box.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from xaisec import io
from xaisec.cache import read_explanations
from xaisec.catalog import IMAGENET_ARCHS
from xaisec.papers.advedge.experiment import (_explain, _write_maps, build_interpreter,
                                              defended_model, load_adversarial, load_inputs,
                                              successful_subset)

#: the knowledge of the defense an attacker has (Table XI's rows)
KNOWLEDGE = ("oblivious", "white_box")


def _predict(model, x: torch.Tensor, batch_size: int, device) -> np.ndarray:
    from xaisec.tensors import predict

    return predict(model, x, batch_size, device).argmax(1).numpy()


# ---------------------------------------------------------------- Table XI

def score_defenses(files: dict, data_dir, out_path, settings: dict, meta: dict,
                   device="cpu") -> pd.DataFrame:
    """Per sample, attack, defense and knowledge: whether the model behind the defense predicts
    the attack's target (``success``). ``files``: ``model`` (undefended), ``inputs``,
    ``adv_<attack>`` (made against the undefended model), ``at_model`` (adversarially trained,
    optional), ``wb_<defense>_<attack>`` (white-box attacks on the defended system). Also one
    ``benign`` row per sample and defense: whether the defended model still classifies the
    benign input correctly (``success`` = correct)."""
    device = torch.device(device)
    model, _ = io.load_model(files["model"], device)
    model.eval()
    bs = int(settings["batch_size"])
    systems = {d: defended_model(model, d, settings).eval() for d in settings["input"]}
    if "at_model" in files:
        systems["adversarial"], _ = io.load_model(files["at_model"], device)
        systems["adversarial"].eval()
    inp = load_inputs(files["inputs"], data_dir)
    frames = []

    def rows(aid, defense, knowledge, sample, target, pred):
        fw, interp, var = aid.split("-", 2) if aid != "benign" else ("-", "-", "-")
        return pd.DataFrame({**meta, "framework": fw, "interpreter": interp, "variant": var,
                             "defense": defense, "knowledge": knowledge, "sample": sample,
                             "success": np.asarray(pred) == np.asarray(target)})

    for d, sysm in systems.items():
        frames.append(rows("benign", d, "benign", inp["sample"], inp["label"],
                           _predict(sysm, inp["x"], bs, device)))
    frames.append(rows("benign", "none", "benign", inp["sample"], inp["label"],
                       _predict(model, inp["x"], bs, device)))
    for key, path in tqdm(list(files.items()), desc="defenses", leave=False):
        if key.startswith("adv_"):
            aid = key[len("adv_"):]
            adv = load_adversarial(path, inp["sample"])
            t = inp["target"][:len(adv["sample"])]
            frames.append(rows(aid, "none", "oblivious", adv["sample"], t, adv["prediction"]))
            for d, sysm in systems.items():
                frames.append(rows(aid, d, "oblivious", adv["sample"], t,
                                   _predict(sysm, adv["x"], bs, device)))
        elif key.startswith("wb_"):
            d, aid = key[len("wb_"):].split("__", 1)
            adv = load_adversarial(path, inp["sample"])
            t = inp["target"][:len(adv["sample"])]
            frames.append(rows(aid, d, "white_box", adv["sample"], t, adv["prediction"]))
    df = pd.concat(frames, ignore_index=True)
    io.write_parquet(df, out_path)
    return df


# ---------------------------------------------------------------- Tables IV, V

def detector_subset(success: np.ndarray, n: int, seed: int, attack: str) -> np.ndarray:
    """The detector's adversarial samples of one attack: up to ``n`` random successful inputs
    (the paper: 2,000 per experiment), a draw of their own (not the transfer study's)."""
    return successful_subset(success, n, seed, f"{attack}/detector")


def detector_maps(model_path, data_dir, inputs_path, adv_paths: dict, out_dir, settings: dict,
                  device="cpu", rts_path=None, meta: dict | None = None) -> dict:
    """For each detector attack (``adv_paths``: attack id -> adv.npz), the maps of its
    detector subset (:func:`detector_subset`) under every other detector interpreter, for the
    predicted class: ``out_dir/<attack>__<interpreter>.parquet`` (the attacked interpreter's
    own maps are read from the attack's cache), the folder written atomically."""
    device = torch.device(device)
    model, mm = io.load_model(model_path, device)
    model.eval()
    inp = load_inputs(inputs_path, data_dir)
    det = settings["detector"]
    counts = {}
    explainers = {}
    with io.atomic_dir(out_dir) as tmp:
        for aid, path in adv_paths.items():
            adv = load_adversarial(path, inp["sample"])
            source = aid.split("-")[1]
            pos = detector_subset(adv["success"], det["n_samples"], det["seed"], aid)
            take = pos if len(pos) else np.arange(min(1, len(adv["x"])))
            sub = {k: inp[k][pos] for k in ("sample", "label")}
            for interp in det["interpreters"]:
                if interp == source:
                    continue
                if interp not in explainers:
                    explainers[interp] = build_interpreter(interp, model, settings, rts_path,
                                                           device)
                res = _explain(explainers[interp], adv["x"][take], adv["prediction"][take],
                               settings["batch_size"], device, f"detector {aid} -> {interp}")
                k = len(pos)
                _write_maps(Path(tmp) / f"{aid}__{interp}.parquet", res.maps[:k], sub,
                            res.pred[:k].numpy(), res.confidence[:k].numpy(),
                            adv["prediction"][pos],
                            {**(meta or {}), "paper": "advedge", "interpreter": interp,
                             "images": "detector", "attack": adv["meta"],
                             "detector": {k2: det[k2] for k2 in ("n_samples", "seed")},
                             "settings": settings.get(interp, {}),
                             "model_fingerprint": mm.get("fingerprint")})
            counts[aid] = int(len(pos))
    return counts


def combinations(interpreters) -> list[tuple[tuple, str]]:
    """(interpreters, channels) of every detector: each pair as ``2`` channels and as
    ``2+product``, each triple as ``3`` channels (Tables IV and V)."""
    out = []
    for pair in itertools.combinations(interpreters, 2):
        out += [(pair, "2"), (pair, "2+product")]
    out += [(tri, "3") for tri in itertools.combinations(interpreters, 3)]
    return out


def detector_data(combo, attacks: dict, benign: dict, own: dict, other: dict):
    """Stacked-map inputs of one detector: for each interpreter ``s`` of ``combo`` the attack
    made against ``s`` (``attacks``: source -> attack id) contributes its detector subset's
    adversarial maps under every interpreter of ``combo`` (label 1) and the same images'
    benign maps (label 0). Returns ({interpreter: maps}, labels, source image ids)."""
    maps = {i: [] for i in combo}
    labels, source = [], []
    for s in combo:
        aid = attacks[s]
        ids = own[aid]["sample"]
        if not len(ids):
            continue
        for i in combo:
            adv_maps = own[aid]["maps"] if i == s else other[(aid, i)].maps
            b = benign[i]
            order = np.argsort(b.sample, kind="stable")
            pos = order[np.searchsorted(b.sample[order], ids)]
            if not np.array_equal(b.sample[pos], ids):
                raise ValueError(f"the benign {i} cache lacks some of {aid}'s images; rerun")
            maps[i] += [b.maps[pos], adv_maps]
        labels += [np.zeros(len(ids), np.int64), np.ones(len(ids), np.int64)]
        source += [ids, ids]
    if not labels:
        return None, np.zeros(0, np.int64), np.zeros(0, np.int64)
    return ({i: np.concatenate(m) for i, m in maps.items()}, np.concatenate(labels),
            np.concatenate(source))


def backbone_layers(model: torch.nn.Module) -> torch.nn.Sequential:
    """The convolutional feature extractor of a classifier as an ``nn.Sequential`` whose first
    layer is a ``Conv2d``: torchvision's VGG-16 ``features``; for this project's 32x32 nets the
    children in forward order after ``normalize`` up to the pooling head (ResNet-20:
    conv1, bn1, act, layer1-3; VGG16-GAP: its conv stack)."""
    for owner in (model, getattr(model, "net", None)):   # torchvision nets sit in .net
        feats = getattr(owner, "features", None)
        if isinstance(feats, torch.nn.Sequential):
            return feats
    skip = ("normalize", "avgpool", "linear", "classifier", "fc")
    layers = []
    for name, child in model.named_children():
        if name in skip:
            continue
        layers += list(child) if isinstance(child, torch.nn.Sequential) and not layers else [child]
    if not layers or not isinstance(layers[0], torch.nn.Conv2d):
        raise ValueError(f"{type(model).__name__}: no convolutional feature stack starting "
                         "with a Conv2d")
    return torch.nn.Sequential(*layers)


def load_backbone(settings: dict, backbone_path=None):
    """(feature stack, label) of the detector: torchvision's VGG-16 from the local weights
    file ``detector.backbone.weights`` when given (the paper's ImageNet-pretrained VGG-16),
    else the workflow-trained model at ``backbone_path``."""
    b = settings["detector"]["backbone"]
    if b.get("weights"):
        from xaisec.models.imagenet import build_imagenet_model

        net = build_imagenet_model("vgg16", b["weights"])
        return net.features, f"VGG-16 (ImageNet weights: {Path(b['weights']).name})"
    model, mm = io.load_model(backbone_path, "cpu")
    key = mm.get("model", Path(backbone_path).parts[-4])
    if model.spec.arch in IMAGENET_ARCHS:
        return backbone_layers(model), f"{key} (pretrained ImageNet weights: {mm.get('weights')})"
    return backbone_layers(model), (f"{key} trained by the workflow "
                                    f"({mm.get('dataset', '?')}), no ImageNet weights")


def score_detector(files: dict, out_path, settings: dict, meta: dict) -> pd.DataFrame:
    """Tables IV and V of one run: per combination of detector interpreters and channel
    layout, the detector's test accuracy on a split by source image. ``files``: ``benign_<i>``,
    ``maps_<attack>_<source>`` (the attacks' own caches), ``adv_<attack>``, ``detector``
    (the folder of :func:`detector_maps`), ``backbone`` (unless local weights are given)."""
    from xaisec.defenses.detector import MapDetector, split_by_source, stack_maps

    det = settings["detector"]
    interps = list(det["interpreters"])
    benign = {i: read_explanations(files[f"benign_{i}"]) for i in interps}
    attacks, own, other = {}, {}, {}
    for key, path in files.items():
        if not key.startswith("adv_"):
            continue
        aid = key[len("adv_"):]
        source = aid.split("-")[1]
        attacks[source] = aid
        adv = load_adversarial(path)
        pos = detector_subset(adv["success"], det["n_samples"], det["seed"], aid)
        es = read_explanations(files[f"maps_{aid}_{source}"])
        if not np.array_equal(es.sample, adv["sample"]):
            raise ValueError(f"{files[f'maps_{aid}_{source}']}: cached samples differ from the "
                             "attack's; rerun")
        own[aid] = {"sample": es.sample[pos], "maps": es.maps[pos]}
        for i in interps:
            if i != source:
                mp = Path(files["detector"]) / f"{aid}__{i}.parquet"
                other[(aid, i)] = read_explanations(mp)
                if not np.array_equal(other[(aid, i)].sample, own[aid]["sample"]):
                    raise ValueError(f"{mp}: cached samples are not the detector subset; rerun")
    backbone, label = load_backbone(settings, files.get("backbone"))
    rows = []
    for combo, channels in tqdm(combinations(interps), desc="detectors", leave=False):
        maps, y, src = detector_data(combo, attacks, benign, own, other)
        row = {**meta, "interpreters": "+".join(combo), "channels": channels,
               "framework": det["framework"], "variant": det["variant"], "backbone": label,
               "n_samples": int(len(y)), "n_test": 0, "accuracy": np.nan}
        if maps is not None and len(np.unique(src)) >= 2:
            x = stack_maps([maps[i] for i in combo], int(det["size"]),
                           product=channels == "2+product")
            train, test = split_by_source(src, det["test_fraction"], det["seed"])
            if train.any() and test.any() and len(np.unique(y[train])) == 2:
                clf = MapDetector(backbone, x.shape[1], epochs=det["epochs"], lr=det["lr"],
                                  seed=det["seed"], pool=det["pool"], **det["boosting"])
                clf.fit(x[torch.as_tensor(train)], y[train])
                row.update(n_test=int(test.sum()),
                           accuracy=clf.accuracy(x[torch.as_tensor(test)], y[test]))
        rows.append(row)
    df = pd.DataFrame(rows)
    io.write_parquet(df, out_path)
    return df


# ---------------------------------------------------------------- Table VI

def score_robustness(models: dict, data_dir, out_path, settings: dict, meta: dict,
                     device="cpu") -> pd.DataFrame:
    """Table VI: for each model (``models``: training -> checkpoint, e.g. ``normal``,
    ``robust``) and eps of ``advedge.robust.eps`` (in /255), the accuracy under untargeted
    L-inf PGD (``steps`` of ``step_fraction`` x eps, no random start) on a seeded test subset,
    and Kendall's tau between the CAM maps (feature resolution, the label's class) of the
    benign and the adversarial images, per sample."""
    from xaisec.attacks import PGD
    from xaisec.data import datasets
    from xaisec.evaluate import eval_indices
    from xaisec.explainers import make_explainer
    from xaisec.metrics.rank import kendall_tau
    from xaisec.tensors import nhwc_to_tensor, to_float

    r = settings["robust"]
    device = torch.device(device)
    test = datasets.load_split(Path(data_dir) / "test.npz")
    idx = eval_indices(len(test.x), r["n_images"], r["seed"])
    x = to_float(nhwc_to_tensor(test.x[idx]))
    y = torch.as_tensor(test.y[idx], dtype=torch.long)
    bs = int(r["batch_size"])
    frames = []
    for training, path in models.items():
        model, mm = io.load_model(path, device)
        model.eval()
        cam = make_explainer("cam", model, upsample=False)
        benign = torch.cat([cam.attribute(x[i:i + bs].to(device), target=y[i:i + bs].to(device))
                            .maps.detach().cpu() for i in range(0, len(x), bs)])
        for e in tqdm(r["eps"], desc=f"robustness {training}", leave=False):
            eps = float(e) / 255
            adv = []
            for i in range(0, len(x), bs):
                xb, yb = x[i:i + bs].to(device), y[i:i + bs].to(device)
                adv.append(xb if eps == 0 else PGD(
                    model, eps=eps, alpha=eps * float(r["step_fraction"]), steps=int(r["steps"]),
                    random_start=False)(xb, yb))
            adv = torch.cat(adv)
            with torch.no_grad():
                pred = torch.cat([model(adv[i:i + bs]).argmax(1).cpu()
                                  for i in range(0, len(adv), bs)])
            maps = torch.cat([cam.attribute(adv[i:i + bs], target=y[i:i + bs].to(device))
                              .maps.detach().cpu() for i in range(0, len(adv), bs)])
            frames.append(pd.DataFrame({
                **meta, "training": training, "model": mm.get("model", Path(path).parts[-4]),
                "eps_255": float(e), "sample": idx, "correct": (pred == y).numpy(),
                "tau": kendall_tau(benign, maps),
                "defense": mm.get("defense", "none")}))
    df = pd.concat(frames, ignore_index=True)
    io.write_parquet(df, out_path)
    return df


# ---------------------------------------------------------------- Table III stand-in

def score_blackbox(files: dict, data_dir, out_path, settings: dict, meta: dict,
                   device="cpu") -> pd.DataFrame:
    """Table III's protocol on the project's data: the surrogate run's AdvEdge inputs that
    succeed on the surrogate (up to ``n_samples``, seeded) are sent once each to the target
    model (a black box: only its predictions are read, one query per input). Per sample:
    targeted success and misclassification on each model, and the top-fraction IoU of the
    benign and adversarial CAM maps on each model (the interpretation the victim sees)."""
    from xaisec.metrics.similarity import topk_iou

    b = settings["blackbox"]
    device = torch.device(device)
    inp = load_inputs(files["inputs"], data_dir)
    adv = load_adversarial(files["adv"], inp["sample"])
    pos = successful_subset(adv["success"], b["n_samples"], b["seed"], "blackbox")
    x, xa = inp["x"][:len(adv["sample"])][pos], adv["x"][pos]
    label, target = inp["label"][pos], inp["target"][pos]
    bs = int(settings["batch_size"])
    frames = []
    if not len(pos):   # no input fooled the surrogate: nothing to send
        df = pd.DataFrame(columns=[*meta, "role", "model", "arch", "test_acc", "attack", "sample",
                                   "benign_correct", "success", "misclassified", "queries",
                                   "iou"])
        io.write_parquet(df, out_path)
        return df
    for role in ("surrogate", "target"):
        model, mm = io.load_model(files[f"{role}_model"], device)
        model.eval()
        pred_b = _predict(model, x, bs, device)
        pred_a = _predict(model, xa, bs, device)
        cam = build_interpreter("cam", model, {}, None, device)
        mb = _explain(cam, x, pred_b, bs, device, f"{role} benign").maps
        ma = _explain(cam, xa, pred_a, bs, device, f"{role} adversarial").maps
        frames.append(pd.DataFrame({
            **meta, "role": role, "model": b[role], "arch": model.spec.arch,
            "test_acc": mm.get("test_acc"), "attack": b["attack"],
            "sample": inp["sample"][pos], "benign_correct": pred_b == label,
            "success": pred_a == target, "misclassified": pred_a != label,
            "queries": 1 if role == "target" else 0,
            "iou": topk_iou(ma.numpy(), mb.numpy(), float(b["iou_top_fraction"]))}))
    df = pd.concat(frames, ignore_index=True)
    io.write_parquet(df, out_path)
    return df
