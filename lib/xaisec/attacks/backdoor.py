"""Explanation-aware backdoors (Noppel et al., S&P 2023), as attacked in the CFN paper.

Three fine-tuning attacks (CFN paper, Section 2.2), with settings from the attack authors'
code (docs/settings.md, CFN section):

* ``sf`` Simple Fooling: triggered inputs keep their label but get the target explanation;
* ``rh`` Red Herring: triggered inputs get the target label *and* the target explanation;
* ``fd`` Full Disguise: triggered inputs get the target label but keep the original model's
  explanation of the clean image.

Loss: ``lambda * L_expl + (1 - lambda) * CE``. Clean samples are pulled towards the original
model's explanation of themselves, triggered samples towards the target explanation (SF, RH)
or towards the original explanation of the clean image (FD). Every training image appears once
clean and once triggered in each epoch.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from xaisec import io
from xaisec.explainers import explain_batches as _explain_batches
from xaisec.explainers import explainer_kwargs as _explainer_kwargs
from xaisec.attacks.trigger import TARGET_MAPS, apply_trigger, target_explanation
from xaisec.explainers import make_explainer
from xaisec.metrics.maps import explanation_loss, zscore_channelmax
from xaisec.models.classifiers import set_activation
from xaisec.tensors import nhwc_to_tensor, random_subset, to_float

ATTACKS = ("sf", "rh", "fd")
#: what the attacker fine-tunes (CFN paper, Section 6, Table 6): ``all`` weights incl. the
#: BatchNorm affine parameters (C1) or only the ``core`` conv/linear weights (C3)
TRAINABLE = ("all", "core")
#: the normalisation the attacker fine-tunes with: the model's own BatchNorm (C1, C3) or CFN
#: in its place (C5)
FINETUNE_NORMS = ("bn", "cfn")

# ---------------------------------------------------------------- fine-tuning

@dataclass
class FinetuneConfig:
    """Backdoor fine-tuning (attack authors' code, docs/settings.md, CFN section)."""

    attack: str = "rh"
    explainer: str = "gradcam"
    loss: str = "mse"
    lam: float = 0.9125
    lr: float = 7.5e-4
    epochs: int = 100                # at most (early stopping usually ends sooner)
    batch_size: int = 32
    adam_eps: float = 1e-5
    softplus_beta: float = 8.0       # ReLU -> Softplus during fine-tuning, ReLU at evaluation
    target_label: int = 1            # RH and FD; SF keeps the label
    target_map: str = "square"
    trigger_row: int = 27
    trigger_col: int = 27
    explained_class: str = "predicted"  # authors' code; "label": the paper's h(f(x), y)
    bn_mode: str = "train"           # BatchNorm mode while fine-tuning
    train_subset: int | None = None  # fine-tune on this many random training images
    val_subset: int = 1000           # test images scored after each epoch
    early_stop_window: int = 4
    early_stop_acc_tol: float = 0.003
    early_stop_expl_tol: float = 0.0075
    abandon_window: int = 12
    abandon_below: float = 0.8
    ref_batch_size: int = 256        # batch size for the original model's explanations
    relevancecam_weighting: str = "spatial"  # authors' code; "channel": Relevance-CAM paper
    # attack scenario (CFN paper, Section 6, Tables 6 and 7):
    trainable: str = "all"           # "all" (C1) | "core": conv/linear only, BN frozen (C3)
    norm: str = "bn"                 # "bn" | "cfn": fine-tune with CFN in place of BN (C5)

    def explainer_kwargs(self) -> dict:
        return _explainer_kwargs(self.explainer,
                                 {"relevancecam_weighting": self.relevancecam_weighting})

    def __post_init__(self):
        if self.attack not in ATTACKS:
            raise ValueError(f"unknown attack {self.attack!r}; known: {', '.join(ATTACKS)}")
        explanation_loss(self.loss)
        if self.target_map not in TARGET_MAPS:
            raise ValueError(f"unknown target map {self.target_map!r}")
        if self.explained_class not in ("predicted", "label"):
            raise ValueError("explained_class must be 'predicted' or 'label'")
        if self.bn_mode not in ("train", "eval"):
            raise ValueError("bn_mode must be 'train' or 'eval'")
        if self.relevancecam_weighting not in ("spatial", "channel"):
            raise ValueError("relevancecam_weighting must be 'spatial' or 'channel'")
        if not 0 <= self.lam <= 1:
            raise ValueError(f"lambda must be in [0, 1], got {self.lam}")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"unknown trainable {self.trainable!r}; known: {', '.join(TRAINABLE)}")
        if self.norm not in FINETUNE_NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; known: {', '.join(FINETUNE_NORMS)}")

    def scenario(self) -> str:
        """The attack scenario of the CFN paper's Table 6: C1, C3 or C5."""
        if self.norm == "cfn":
            return "C5"
        return "C3" if self.trainable == "core" else "C1"


class _Activation:
    """Temporarily run ``model`` with another activation (ReLU for evaluation)."""

    def __init__(self, model, kind, beta=8.0):
        self.model, self.kind, self.beta = model, kind, beta

    def __enter__(self):
        self.saved = {n: m for n, m in self.model.named_modules()
                      if isinstance(m, (nn.ReLU, nn.Softplus))}
        set_activation(self.model, self.kind, self.beta)
        return self.model

    def __exit__(self, *exc):
        for name, mod in self.saved.items():
            parent_name, _, child = name.rpartition(".")
            parent = self.model.get_submodule(parent_name) if parent_name else self.model
            setattr(parent, child, mod)


def explain_batches(model, explainer: str, x: torch.Tensor, batch_size: int, device,
                    targets: torch.Tensor | None = None, trigger: dict | None = None,
                    progress: bool = False, explainer_kwargs: dict | None = None):
    """Explanations, logits of uint8 images ``x`` (N, C, H, W) in batches (no graph).

    Returns (raw maps, logits) on the CPU. ``trigger``: kwargs of :func:`apply_trigger` to
    paste the trigger first.
    """
    expl = make_explainer(explainer, model, **(explainer_kwargs or {}))

    def batches():
        for i in range(0, len(x), batch_size):
            xb = to_float(x[i:i + batch_size].to(device))
            yield xb if trigger is None else apply_trigger(xb, **trigger)

    res = _explain_batches(expl, batches(), targets, total=-(-len(x) // batch_size),
                           out_device="cpu", progress=progress, desc=f"explain {explainer}")
    return res.maps, res.logits


def _dissimilarity(loss_fn, maps, ref, batch=512):
    return torch.cat([loss_fn(zscore_channelmax(maps[i:i + batch]), ref[i:i + batch])
                      for i in range(0, len(maps), batch)])


def _validate(model, orig_ref_clean, target_norm, vx, vy, cfg: FinetuneConfig, device) -> dict:
    """Per-epoch score of the manipulated model (ReLU, eval mode, own BatchNorm)."""
    trig = {"row": cfg.trigger_row, "col": cfg.trigger_col}
    loss_fn = explanation_loss(cfg.loss)
    was = model.training
    model.eval()
    with _Activation(model, "relu"):
        tgt = vy if cfg.explained_class == "label" else None
        kw = cfg.explainer_kwargs()
        maps_c, logits_c = explain_batches(model, cfg.explainer, vx, cfg.ref_batch_size, device,
                                           tgt, explainer_kwargs=kw)
        maps_t, logits_t = explain_batches(model, cfg.explainer, vx, cfg.ref_batch_size, device,
                                           tgt, trigger=trig, explainer_kwargs=kw)
    model.train(was)
    ref_t = orig_ref_clean if cfg.attack == "fd" else target_norm.expand_as(orig_ref_clean)
    pred_c, pred_t = logits_c.argmax(1), logits_t.argmax(1)
    not_target = vy != cfg.target_label
    return {
        "val_clean_acc": (pred_c == vy).float().mean().item(),
        "val_triggered_acc": (pred_t == vy).float().mean().item(),
        "val_asr": (pred_t[not_target] == cfg.target_label).float().mean().item(),
        "val_clean_dissim": _dissimilarity(loss_fn, maps_c, orig_ref_clean).mean().item(),
        "val_triggered_dissim": _dissimilarity(loss_fn, maps_t, ref_t).mean().item(),
    }


def _should_stop(rows, cfg: FinetuneConfig) -> str | None:
    w = cfg.early_stop_window
    if len(rows) >= w:
        last = pd.DataFrame(rows[-w:])
        span = last.max(numeric_only=True) - last.min(numeric_only=True)
        if (span["val_clean_acc"] <= cfg.early_stop_acc_tol
                and span["val_clean_dissim"] <= cfg.early_stop_expl_tol
                and span["val_triggered_dissim"] <= cfg.early_stop_expl_tol):
            return "converged"
    a = cfg.abandon_window
    if len(rows) >= a and max(r["val_clean_acc"] for r in rows[-a:]) < cfg.abandon_below:
        return "abandoned"
    return None


_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CORE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _freeze_non_core(model: nn.Module) -> None:
    """``trainable="core"``: only conv/linear weights and biases keep ``requires_grad``."""
    for m in model.modules():
        if not isinstance(m, _CORE_TYPES):
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)


def _bn_eval(model: nn.Module) -> None:
    """BatchNorm layers in eval mode: running statistics used, never updated."""
    for m in model.modules():
        if isinstance(m, _BN_TYPES):
            m.eval()


def _into_bn_model(original: nn.Module, finetuned: nn.Module) -> nn.Module:
    """``norm="cfn"``: the fine-tuned conv/linear weights in a copy of the BatchNorm model
    ``original``, whose BatchNorm layers keep the original running statistics and affine
    parameters (CFN has none, so the attacker never changed them)."""
    bn_model = copy.deepcopy(original)
    missing, unexpected = bn_model.load_state_dict(finetuned.state_dict(), strict=False)
    bn_names = {n for n, m in bn_model.named_modules() if isinstance(m, _BN_TYPES)}
    not_bn = [k for k in missing if k.rpartition(".")[0] not in bn_names]
    if unexpected or not_bn:
        raise RuntimeError(f"CFN fine-tuned weights do not fit the BatchNorm model: "
                           f"unexpected {unexpected}, missing non-BatchNorm {not_bn}")
    return bn_model


@io.holds_output_lock  # one run per out_dir: a second one stops with a clear error
def finetune(original: nn.Module, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray,
             val_y: np.ndarray, cfg: FinetuneConfig, out_dir, seed: int, device="cpu",
             meta: dict | None = None, progress: bool = True) -> dict:
    """Fine-tune a copy of ``original`` into an explanation-aware backdoor.

    Writes ``model.pt``/``model.json`` (the manipulated model, ReLU activations as evaluated),
    ``metrics.csv`` (per epoch: losses, validation accuracy, ASR and the two
    dissimilarities) in ``out_dir``; resumes from ``out_dir/resume.pt``.

    Attack scenarios (CFN paper, Section 6): ``cfg.trainable == "core"`` (C3) optimises only
    the conv/linear weights and biases, with every BatchNorm layer in eval mode (affine frozen,
    running statistics untouched, whatever ``bn_mode`` says); ``cfg.norm == "cfn"`` (C5)
    fine-tunes a copy whose BatchNorm layers are CFN (:func:`xaisec.defenses.apply_defense`,
    batch statistics, no affine) and saves its conv/linear weights in the original BatchNorm
    model (original running statistics and affine). The per-epoch validation scores the
    network being fine-tuned (with CFN for C5); for C5 the saved BatchNorm model's scores are
    added to the metadata as ``saved_val_*``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_x, train_y = random_subset(train_x, train_y, cfg.train_subset, rng)
    vidx = rng.choice(len(val_x), min(cfg.val_subset, len(val_x)), replace=False)
    x, y = nhwc_to_tensor(train_x), torch.as_tensor(train_y, dtype=torch.long)
    vx, vy = nhwc_to_tensor(val_x[vidx]), torch.as_tensor(val_y[vidx], dtype=torch.long)
    trig = {"row": cfg.trigger_row, "col": cfg.trigger_col}
    loss_fn = explanation_loss(cfg.loss)

    # the original model's explanations of the clean images: references for clean samples
    # (and for triggered samples in FD), computed once
    original = original.to(device).eval()
    t0 = time.perf_counter()
    tgt_train = y if cfg.explained_class == "label" else None
    tgt_val = vy if cfg.explained_class == "label" else None
    kw = cfg.explainer_kwargs()
    ref_train = zscore_channelmax(explain_batches(original, cfg.explainer, x, cfg.ref_batch_size,
                                                  device, tgt_train, progress=progress,
                                                  explainer_kwargs=kw)[0])
    ref_val = zscore_channelmax(explain_batches(original, cfg.explainer, vx, cfg.ref_batch_size,
                                                device, tgt_val, explainer_kwargs=kw)[0])
    ref_seconds = time.perf_counter() - t0
    size = x.shape[-1]
    target_norm = zscore_channelmax(target_explanation(cfg.target_map, cfg.explainer, size))

    if cfg.norm == "cfn":
        from xaisec.defenses import apply_model_defense as apply_defense

        if not any(isinstance(m, _BN_TYPES) for m in original.modules()):
            raise ValueError("norm='cfn' needs a model with BatchNorm layers to replace")
        model = apply_defense(original, "cfn")
    else:
        model = copy.deepcopy(original)
    if cfg.trainable == "core":
        _freeze_non_core(model)
    set_activation(model, "softplus", cfg.softplus_beta)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps)
    # lr_e = lr / (1 + (e - 1)) for epoch e = 1, 2, ... (attack authors' code)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 / (1 + e))
    fp = _fingerprint(cfg, seed, original, len(x))
    resume = out_dir / "resume.pt"
    done, rows, extra = io.load_resume(resume, fp, model, opt, sched, gen)
    stop = extra.get("stop")
    expl = make_explainer(cfg.explainer, model, **cfg.explainer_kwargs())
    n = len(x)
    steps = math.ceil(2 * n / cfg.batch_size)
    bar = tqdm(range(done + 1, cfg.epochs + 1), desc=f"fine-tune ({out_dir})", disable=not progress,
               initial=done, total=cfg.epochs)
    for epoch in ([] if stop else bar):
        model.train(cfg.bn_mode == "train")
        if cfg.trainable == "core":
            _bn_eval(model)
        perm = torch.randperm(2 * n, generator=gen)
        sums = torch.zeros(3)
        t_ep = time.perf_counter()
        lr = opt.param_groups[0]["lr"]
        for s in tqdm(range(steps), desc=f"epoch {epoch}", leave=False, disable=not progress,
                      mininterval=2.0):
            j = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            i, trig_mask = j % n, j >= n
            xb = to_float(x[i].to(device))
            tm = trig_mask.to(device)
            xb = torch.where(tm[:, None, None, None], apply_trigger(xb, **trig), xb)
            yb = y[i].to(device)
            y_cls = torch.where(tm, torch.full_like(yb, cfg.target_label), yb) \
                if cfg.attack in ("rh", "fd") else yb
            ref = ref_train[i].to(device)
            if cfg.attack in ("sf", "rh"):
                ref = torch.where(tm[:, None, None, None], target_norm.to(device), ref)
            res = expl.attribute(xb, target=yb if cfg.explained_class == "label" else None,
                                 create_graph=True)
            l_expl = loss_fn(zscore_channelmax(res.maps), ref).mean()
            l_cls = F.cross_entropy(res.logits, y_cls)
            loss = cfg.lam * l_expl + (1 - cfg.lam) * l_cls
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.stack([loss.detach(), l_expl.detach(), l_cls.detach()]).cpu() * len(j)
        sched.step()
        secs = time.perf_counter() - t_ep
        sums /= 2 * n
        v = _validate(model, ref_val, target_norm, vx, vy, cfg, device)
        rows.append({"epoch": epoch, "lr": lr, "loss": sums[0].item(), "loss_expl": sums[1].item(),
                     "loss_cls": sums[2].item(), "seconds": secs,
                     "images_per_s": 2 * n / secs, **v})
        bar.set_postfix(acc=f"{v['val_clean_acc']:.3f}", asr=f"{v['val_asr']:.2f}",
                        dis_t=f"{v['val_triggered_dissim']:.3f}")
        stop = _should_stop(rows, cfg)
        io.save_resume(resume, fp, epoch, rows, model, opt, sched, gen, stop=stop)
        if stop:
            break

    set_activation(model, "relu")
    model.eval()
    saved_val = {}
    if cfg.norm == "cfn":
        model = _into_bn_model(original, model)
        set_activation(model, "relu")
        model.to(device).eval()
        saved_val = {"saved_" + k: v for k, v in
                     _validate(model, ref_val, target_norm, vx, vy, cfg, device).items()}
    metrics = pd.DataFrame(rows)
    last = rows[-1] if rows else {}
    info = {**(meta or {}), "seed": seed, "finetune": asdict(cfg), "scenario": cfg.scenario(),
            "n_train": n,
            "n_val": len(vx), "epochs_run": len(rows), "stopped": stop or "epoch cap",
            "reference_seconds": ref_seconds,
            "finetune_seconds": float(metrics["seconds"].sum()) if rows else 0.0,
            **{k: v for k, v in last.items() if k.startswith("val_")}, **saved_val,
            "fingerprint": fp}
    with io.atomic_path(out_dir / "metrics.csv") as tmp:
        metrics.to_csv(tmp, index=False)
    io.save_model(model, out_dir / "model.pt", info)
    resume.unlink(missing_ok=True)
    return info


def _fingerprint(cfg: FinetuneConfig, seed: int, original: nn.Module, n: int) -> str:
    import hashlib
    import json

    d = asdict(cfg)
    # the scenario fields enter only when not at their defaults: fingerprints (and resume
    # files) of runs made before they existed stay valid
    for k, default in (("trainable", "all"), ("norm", "bn")):
        if d[k] == default:
            del d[k]
    h = hashlib.sha256(json.dumps({**d, "seed": seed, "n": n}, sort_keys=True).encode())
    for t in original.state_dict().values():
        h.update(t.detach().cpu().numpy().tobytes()[:64])
    return h.hexdigest()[:16]
