"""Clean training of the classifiers (CFN paper's reference recipe, docs/settings.md).

Data stay in memory as uint8 tensors; batches are converted, augmented (random crop with
zero padding, horizontal flip) and moved to the device as whole tensors, with no per-sample
Python work. A run writes ``resume.pt`` beside its outputs after every epoch and picks it up
again when restarted with the same settings, so a killed job loses at most one epoch.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from xaisec import io
from xaisec.tensors import nhwc_to_tensor, predict, random_subset, to_float


@dataclass
class TrainConfig:
    """Defaults: the CFN paper's clean-training recipe (authors' code, docs/settings.md)."""

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "multistep"  # "multistep" (paper) or "onecycle" (fast reduced-scale runs)
    milestones: list = field(default_factory=lambda: [100, 150])
    gamma: float = 0.1
    crop_padding: int = 4
    flip: bool = True
    train_subset: int | None = None  # None: the whole training split
    eval_subset: int | None = None  # test images evaluated after each epoch; None: all
    eval_batch_size: int = 500

    def __post_init__(self):
        if self.schedule not in ("multistep", "onecycle"):
            raise ValueError(f"train.schedule must be 'multistep' or 'onecycle', got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("train.epochs and train.batch_size must be >= 1")

    def fingerprint(self, **extra) -> str:
        blob = json.dumps({**asdict(self), **extra}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, padding: int = 4,
                     flip: bool = True) -> torch.Tensor:
    """Batched random crop (zero padding) and horizontal flip of an (N, C, H, W) batch."""
    n, c, h, w = x.shape
    dev = x.device
    if padding > 0:
        xp = F.pad(x, (padding,) * 4)
        oy = torch.randint(0, 2 * padding + 1, (n,), generator=gen).to(dev)
        ox = torch.randint(0, 2 * padding + 1, (n,), generator=gen).to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]  # n, h, 1
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]  # n, 1, w
        x = xp.permute(0, 2, 3, 1)[torch.arange(n, device=dev)[:, None, None], rows, cols]
        x = x.permute(0, 3, 1, 2)
    if flip:
        m = (torch.rand(n, generator=gen) < 0.5).to(dev)[:, None, None, None]
        x = torch.where(m, x.flip(3), x)
    return x.contiguous()


def _optimizer(model, cfg: TrainConfig, steps_per_epoch: int):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    if cfg.schedule == "multistep":
        # stepped once per epoch
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(cfg.milestones),
                                                     gamma=cfg.gamma)
    else:  # stepped once per batch
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                    steps_per_epoch=steps_per_epoch)
    return opt, sched


def train_epoch(model, opt, sched, x, y, cfg: TrainConfig, gen: torch.Generator, device,
                desc: str = "train", progress: bool = True, defense=None) -> dict:
    """One epoch over uint8 images ``x`` (N, C, H, W) and labels ``y``; returns metrics.
    ``defense``: a :class:`~xaisec.defenses.training.TrainingDefense` whose loss replaces the
    cross-entropy (its logits, e.g. adversarial ones, give the training accuracy)."""
    model.train()
    n = len(x)
    perm = torch.randperm(n, generator=gen)
    steps = math.ceil(n / cfg.batch_size)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, leave=False, mininterval=2.0, disable=not progress)
    for s in bar:
        idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
        xb = to_float(x[idx].to(device, non_blocking=True))
        yb = y[idx].to(device, non_blocking=True)
        xb = random_crop_flip(xb, gen, cfg.crop_padding, cfg.flip)
        if defense is None:
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
        else:
            loss, logits = defense.loss_and_logits(model, xb, yb)
            if logits is None:
                with torch.no_grad():
                    logits = model(xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cfg.schedule == "onecycle":
            sched.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.detach().argmax(1) == yb).sum()
    if cfg.schedule == "multistep":
        sched.step()
    secs = time.perf_counter() - t0
    return {"train_loss": loss_sum.item() / n, "train_acc": correct.item() / n,
            "seconds": secs, "images_per_s": n / secs}


def evaluate_accuracy(model, x, y, batch_size=500, device=None) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode."""
    was_training = model.training
    model.eval()
    logits = predict(model, x, batch_size, device)
    model.train(was_training)
    return ((logits.argmax(1) == y).float().mean().item(),
            F.cross_entropy(logits, y).item())


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@io.holds_output_lock  # one run per out_dir: a second one stops with a clear error
def fit(model: nn.Module, train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
        test_y: np.ndarray, cfg: TrainConfig, out_dir, seed: int, device="cpu",
        meta: dict | None = None, progress: bool = True, defense=None,
        init: dict | None = None) -> dict:
    """Train ``model`` and write ``model.pt``, ``model.json`` and ``metrics.csv`` in ``out_dir``.

    ``train_x``/``test_x`` are uint8 (N, H, W, 3) arrays. Resumes from ``out_dir/resume.pt``
    when it was written by a run with the same settings. ``defense``: a training-time defense
    (:mod:`xaisec.defenses`, kind ``training``) whose loss replaces the cross-entropy;
    ``init``: ``{"path", "fingerprint"}`` of a checkpoint the model starts from (a
    fine-tuning; the caller loaded its weights), both recorded in ``model.json``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)

    sel = np.random.default_rng(seed)
    train_x, train_y = random_subset(train_x, train_y, cfg.train_subset, sel)
    test_x, test_y = random_subset(test_x, test_y, cfg.eval_subset, sel)
    x, y = nhwc_to_tensor(train_x), torch.as_tensor(train_y, dtype=torch.long)
    tx, ty = nhwc_to_tensor(test_x), torch.as_tensor(test_y, dtype=torch.long)
    if device.type == "cuda":  # the data sets are small: keep them on the GPU
        x, y, tx, ty = x.to(device), y.to(device), tx.to(device), ty.to(device)

    model.to(device)
    steps = math.ceil(len(x) / cfg.batch_size)
    opt, sched = _optimizer(model, cfg, steps)
    extra = {} if defense is None and init is None else {
        "defense": repr(defense), "init": (init or {}).get("fingerprint")}
    fp = cfg.fingerprint(seed=seed, spec=model.spec.to_dict(), n_train=len(x), **extra)
    resume = out_dir / "resume.pt"
    done, rows, _ = io.load_resume(resume, fp, model, opt, sched, gen)
    start = done + 1
    bar = tqdm(range(start, cfg.epochs + 1), desc=f"epochs ({out_dir})", disable=not progress,
               initial=start - 1, total=cfg.epochs)
    for epoch in bar:
        lr = opt.param_groups[0]["lr"]
        m = train_epoch(model, opt, sched, x, y, cfg, gen, device, desc=f"epoch {epoch}",
                        progress=progress, defense=defense)
        if not math.isfinite(m["train_loss"]):
            raise TrainingDiverged(
                f"{out_dir}: training diverged in epoch {epoch} (loss {m['train_loss']}) with "
                f"lr {cfg.lr}; nothing was saved. Lower the learning rate for this model "
                f"(models.<key>.train.lr in the config), e.g. for a model without BatchNorm")
        acc, loss = evaluate_accuracy(model, tx, ty, cfg.eval_batch_size, device)
        rows.append({"epoch": epoch, "lr": lr, **m, "test_loss": loss, "test_acc": acc})
        bar.set_postfix(loss=f"{m['train_loss']:.3f}", acc=f"{acc:.4f}",
                        ips=f"{m['images_per_s']:.0f}")
        io.save_resume(resume, fp, epoch, rows, model, opt, sched, gen)

    metrics = pd.DataFrame(rows)
    final = rows[-1]
    info = {
        **(meta or {}),
        "seed": seed,
        "train": asdict(cfg),
        "n_train": len(x),
        "n_eval": len(tx),
        "test_acc": final["test_acc"],
        "train_seconds": float(metrics["seconds"].sum()),
        "fingerprint": fp,
        **({} if defense is None else {"defense": repr(defense)}),
        **({} if init is None else {"init": init}),
    }
    with io.atomic_path(out_dir / "metrics.csv") as tmp:
        metrics.to_csv(tmp, index=False)
    io.save_model(model, out_dir / "model.pt", info)
    resume.unlink(missing_ok=True)
    return info
