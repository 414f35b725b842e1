"""ADV2, AdvEdge and AdvEdge+ in the PGD framework (AdvEdge paper, Sections IV-B and V-A, eqs.
5-8; docs/settings.md#advedge): a targeted L-inf attack on the classifier and its interpreter
at once.

``InterpretationPGD(model, eps, term=..., variant=...)(x, y, target=y_t)``:

1. **stage 1**: ``stage1_steps`` steps on the classification loss CE(f(x_adv), y_t) alone;
2. **stage 2**: for each ``(c, steps)`` of the ``stage2`` schedule, ``steps`` steps on
   label-smoothed CE + c x l_int (the term's squared map distance to the benign map); ``c``
   is a number or a ``[c_start, c_end]`` linear ramp (CAM: 5 -> 10);
3. **keep the best** (``keep_best``): every ``keep_best_every`` stage-2 steps, a sample whose
   target probability exceeds ``best_threshold`` and whose map distance is its smallest so far
   is stored; samples never stored return their last iterate.

Each step is ``x_adv - N_w * step``, projected onto the eps ball and [0, 1], with N_w the
variant's edge weights (:func:`xaisec.attacks.edges.edge_weights`): ones (ADV2), the Sobel
map (AdvEdge), the gate ``edges > phi`` (AdvEdge+). ``edge_stages="paper"`` applies N_w in
both stages (eqs. 8-10); ``"code"`` in stage 1 only (the authors' notebooks). ``step="sign"``
is PGD's signed step of size ``alpha``; ``step="l2"`` (MASK, Sec. V-A) the L2-normalised
gradient with a step length searched per sample (``search="sample"``: the largest of
``max_step * 2^-k``, k < ``search_steps``, keeping the target confidence above
``confidence``, else the smallest; paper) or per batch (``"batch"``: the largest keeping the
batch's summed margin max_{c != t} z_c - z_t below -1; authors' code), or fixed ``beta``
(``"none"``).

Label smoothing (``smoothing``): the target's probability at step j of a ``steps``-long
stage-2 phase is drawn from U[low + span * j / steps, 1] (0.95, 0.04), the rest shared by the
other C - 1 classes (``"paper"``) or by 9 whatever C (``"code"``); ``"none"``: plain CE. The
draws come from a generator seeded per sample by ``seed`` and the sample's pixels, so a
batch's results equal each image's alone.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaisec.attacks.base import (Attack, AttackBatch, Crafted, check_nonnegative,
                                 check_steps)
from xaisec.attacks.edges import VARIANTS, edge_weights, sobel_edges
from xaisec.attacks.interpretation import InterpretationTerm
from xaisec.attacks.pgd import project_linf

__all__ = ["InterpretationPGD", "parse_schedule", "smoothed_ce"]


def parse_schedule(stage2) -> list[tuple[tuple[float, float], int]]:
    """``[(c, steps), ...]`` or ``[{"c": c | [c0, c1], "steps": n}, ...]`` as
    ``[((c_start, c_end), steps), ...]``; a clear error for anything else."""
    out = []
    for item in stage2 or ():
        c, steps = (item["c"], item["steps"]) if isinstance(item, dict) else item
        c0, c1 = (c, c) if not isinstance(c, (list, tuple)) else tuple(c)
        c0, c1 = check_nonnegative("c", c0), check_nonnegative("c", c1)
        out.append(((c0, c1), check_steps("stage-2 steps", steps)))
    return out


def smoothed_ce(logits: Tensor, target: Tensor, conf: Tensor, others: int) -> Tensor:
    """Per-sample cross-entropy against soft labels: ``conf`` on the target, ``(1 - conf) /
    others`` on every other class (N,)."""
    logp = F.log_softmax(logits, dim=1)
    rest = (1 - conf) / others
    q = rest[:, None].expand_as(logp).clone()
    q.scatter_(1, target[:, None], conf[:, None].to(q.dtype))
    return -(q * logp).sum(1)


def _sample_uniforms(x: Tensor, seed: int, n: int) -> Tensor:
    """(N, n) uniforms in [0, 1), one generator per sample seeded by ``seed`` and a digest of
    its pixels (batch-independent draws)."""
    flat = (x.detach().flatten(1).double() * 255).round().long().cpu()
    mult = torch.arange(flat.shape[1], dtype=torch.long) % 1_000_003 + 1
    keys = ((flat * mult).sum(1) + int(seed) * 2_654_435_761) % (2 ** 62)
    rows = [torch.rand(n, generator=torch.Generator().manual_seed(int(k)), dtype=torch.float64)
            for k in keys]
    out = torch.stack(rows) if rows else torch.zeros(0, n, dtype=torch.float64)
    return out.to(device=x.device, dtype=x.dtype)


class InterpretationPGD(Attack):
    """ADV2 / AdvEdge / AdvEdge+ with PGD (see the module docstring). Targeted only: pass
    ``target=`` or a ``target_fn``. ``term=None`` (no interpreter) leaves the classification
    loss alone (a plain targeted PGD, the reference row); ``c = 0`` skips the map."""

    requires_target = True

    def __init__(self, model: nn.Module, eps: float = 0.031, *,
                 term: InterpretationTerm | None = None, variant: str = "adv2",
                 phi: float = 0.1, alpha: float = 1 / 255, stage1_steps: int = 300,
                 stage2: Sequence = ((0.001, 301), (0.004, 201), (0.01, 101), (0.05, 101),
                                     (0.07, 50)),
                 edge_stages: str = "paper", smoothing: str = "paper",
                 smoothing_low: float = 0.95, smoothing_span: float = 0.04,
                 keep_best: bool = True, keep_best_every: int = 10,
                 best_threshold: float = 0.8, step: str = "sign", max_step: float = 0.08,
                 search: str = "sample", search_steps: int = 5, confidence: float = 0.9,
                 beta: float = 0.05, seed: int = 0, **kw):
        super().__init__(model, eps, **kw)
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        for name, value, allowed in (("edge_stages", edge_stages, ("paper", "code")),
                                     ("smoothing", smoothing, ("paper", "code", "none")),
                                     ("step", step, ("sign", "l2")),
                                     ("search", search, ("sample", "batch", "none"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.term = term
        self.variant, self.phi = variant, float(phi)
        self.alpha = check_nonnegative("alpha", alpha)
        self.stage1_steps = int(check_nonnegative("stage1_steps", stage1_steps))
        self.stage2 = parse_schedule(stage2)
        self.edge_stages, self.smoothing = edge_stages, smoothing
        self.smoothing_low, self.smoothing_span = float(smoothing_low), float(smoothing_span)
        self.keep_best = bool(keep_best)
        self.keep_best_every = check_steps("keep_best_every", keep_best_every)
        self.best_threshold = float(best_threshold)
        self.step, self.search = step, search
        self.max_step = check_nonnegative("max_step", max_step)
        self.search_steps = check_steps("search_steps", search_steps)
        self.confidence = float(confidence)
        self.beta = check_nonnegative("beta", beta)
        self.seed = int(seed)

    def hyperparameters(self) -> dict:
        h = super().hyperparameters()
        h["term"] = None if self.term is None else self.term.name
        return h

    # ------------------------------------------------------------------ steps

    def _step(self, adv: Tensor, grad: Tensor, w: Tensor | None, batch: AttackBatch,
              sign: bool = False) -> Tensor:
        """One descent step on ``grad`` (of the loss to minimise), weighted by ``w`` (None: all
        ones); ``sign``: PGD's signed step whatever ``step`` says (stage 1)."""
        x = batch.x
        if sign or self.step == "sign":
            step = self.alpha * grad.sign()
            return project_linf(adv - (step if w is None else w * step), x, self.eps)
        d = grad if w is None else w * grad
        d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        if self.search == "none":
            return project_linf(adv - self.beta * d, x, self.eps)
        sizes = [self.max_step * 2.0 ** -k for k in range(self.search_steps)]
        cands = torch.stack([project_linf(adv - s * d, x, self.eps) for s in sizes])  # (K,N,...)
        k, n = cands.shape[:2]
        with torch.no_grad():
            logits = self.model(cands.flatten(0, 1)).float().view(k, n, -1)
        t = batch.target
        if self.search == "sample":
            prob = torch.softmax(logits, 2).gather(2, t.view(1, n, 1).expand(k, n, 1))[..., 0]
            ok = prob > self.confidence                                       # (K, N)
            # the first (largest) accepted size, else the last (smallest)
            first = torch.where(ok.any(0), ok.float().argmax(0), torch.full_like(t, k - 1))
            return cands[first, torch.arange(n, device=t.device)]
        zt = logits.gather(2, t.view(1, n, 1).expand(k, n, 1))[..., 0]
        other = logits.scatter(2, t.view(1, n, 1).expand(k, n, 1), float("-inf")).amax(2)
        ok = ((other - zt).sum(1) < -1).tolist()
        return cands[ok.index(True) if True in ok else k - 1]

    def _class_grad(self, adv: Tensor, target: Tensor) -> Tensor:
        adv = adv.detach().requires_grad_(True)
        loss = F.cross_entropy(self.model(adv), target, reduction="sum")
        return torch.autograd.grad(loss, adv)[0]

    # ------------------------------------------------------------------ attack

    def forward(self, batch: AttackBatch) -> Crafted:
        x, t = batch.x, batch.target
        n = len(x)
        # N_w per stage; None where it is all ones (ADV2; AdvEdge's stage 2 under "code")
        w1 = None if self.variant == "adv2" else edge_weights(sobel_edges(x), self.variant,
                                                               self.phi)
        w2 = w1 if self.edge_stages == "paper" else None
        adv = x.clone()
        for _ in range(self.stage1_steps):
            # stage 1 is signed PGD on CE for every interpreter (MASK included)
            g = self._class_grad(adv, t)
            adv = self._step(adv, g, w1, batch, sign=True).detach()
        iterations = torch.full((n,), self.stage1_steps, dtype=torch.long, device=x.device)
        if not self.stage2:
            return Crafted(adv, iterations)

        state = self.term.begin(x, batch.y, t) if self.term is not None else None
        num_classes = None
        total = sum(s for _, s in self.stage2)
        u = _sample_uniforms(x, self.seed, total) if self.smoothing != "none" else None
        best = adv.clone()
        best_d = torch.full((n,), math.inf, dtype=torch.float64, device=x.device)
        best_it = iterations.clone()
        it = 0
        for (c0, c1), steps in self.stage2:
            for j in range(steps):
                c = c0 + (c1 - c0) * (j / (steps - 1) if steps > 1 else 0.0)
                a = adv.detach().requires_grad_(True)
                if self.term is not None and (c > 0 or self.term.has_extra):
                    logits, l_int, l_extra = self.term.loss(a, state)
                else:
                    logits, l_int, l_extra = self.model(a), None, None
                num_classes = logits.shape[1]
                if self.smoothing == "none":
                    ce = F.cross_entropy(logits, t, reduction="none")
                else:
                    low = self.smoothing_low + self.smoothing_span * j / steps
                    conf = low + (1 - low) * u[:, it]
                    others = num_classes - 1 if self.smoothing == "paper" else 9
                    ce = smoothed_ce(logits, t, conf, others)
                loss = ce if l_int is None else ce + c * l_int
                if l_extra is not None:
                    loss = loss + l_extra
                (g,) = torch.autograd.grad(loss.sum(), a)
                adv = self._step(adv, g, w2, batch).detach()
                it += 1
                if self.term is not None:
                    self.term.after_step(adv, state, it)
                if self.keep_best and self.term is not None and it % self.keep_best_every == 0:
                    d, prob = self.term.distance(adv, state)
                    better = (prob > self.best_threshold) & (d.double() < best_d)
                    best = torch.where(better.view(-1, 1, 1, 1), adv, best)
                    best_d = torch.where(better, d.double(), best_d)
                    best_it = torch.where(better, torch.full_like(best_it, self.stage1_steps + it),
                                          best_it)
        found = torch.isfinite(best_d)
        out = torch.where(found.view(-1, 1, 1, 1), best, adv)
        its = torch.where(found, best_it, torch.full_like(best_it, self.stage1_steps + it))
        return Crafted(out, its)
