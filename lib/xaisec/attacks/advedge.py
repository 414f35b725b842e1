"""ADV2, AdvEdge and AdvEdge+ in the PGD framework (AdvEdge paper, Sections IV-B and V-A, eqs.
5-8; docs/settings.md#advedge): a targeted L-inf attack on the classifier and its interpreter
at once; and what every framework shares (:class:`InterpretationAttack`: term, edge weights
per stage, c schedule, label smoothing, :class:`KeepBest`; :class:`OptimizerAttack`: the Adam
stages of C&W (:mod:`.cw`) and StAdv (:mod:`.stadv`)).

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

from xaisec.attacks.base import (Attack, AttackBatch, Crafted, check_choice,
                                 check_nonnegative, check_steps)
from xaisec.attacks.edges import VARIANTS, edge_weights, sobel_edges
from xaisec.attacks.interpretation import InterpretationTerm
from xaisec.attacks.pgd import project_linf

__all__ = ["InterpretationAttack", "InterpretationPGD", "KeepBest", "OptimizerAttack", "margin_loss",
           "parse_schedule", "smoothed_ce"]


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


def margin_loss(logits: Tensor, target: Tensor, kappa: float = 0.0) -> Tensor:
    """C&W's targeted f (Carlini-Wagner 2017; AdvEdge eq. 4's l_prd): ``max(max_{i != t} z_i -
    z_t, -kappa)`` per sample on the logits (N,)."""
    zt = logits.gather(1, target[:, None])[:, 0]
    other = logits.scatter(1, target[:, None], float("-inf")).amax(1)
    return (other - zt).clamp_min(-float(kappa))


class KeepBest:
    """Keep-the-best of stage 2 (docs/settings.md#advedge, "keep the best"): every ``every``
    stage-2 steps, a sample whose target probability exceeds ``threshold`` and whose map
    distance is its smallest so far is stored; :meth:`result` returns the stored samples and
    the last iterate of the others, with the iteration that produced each."""

    def __init__(self, attack: "InterpretationAttack", adv: Tensor, offset: int):
        self.attack, self.offset = attack, offset
        self.enabled = attack.keep_best and attack.term is not None
        n = len(adv)
        self.best = adv.detach().clone()
        self.best_d = torch.full((n,), math.inf, dtype=torch.float64, device=adv.device)
        self.best_it = torch.full((n,), offset, dtype=torch.long, device=adv.device)

    def update(self, adv: Tensor, state, it: int) -> None:
        """After stage-2 step ``it`` (1-based) produced ``adv`` (detached)."""
        a = self.attack
        if not self.enabled or it % a.keep_best_every:
            return
        d, prob = a.term.distance(adv, state)
        better = (prob > a.best_threshold) & (d.double() < self.best_d)
        self.best = torch.where(better.view(-1, 1, 1, 1), adv, self.best)
        self.best_d = torch.where(better, d.double(), self.best_d)
        self.best_it = torch.where(better, torch.full_like(self.best_it, self.offset + it),
                                   self.best_it)

    def result(self, adv: Tensor, it: int) -> Crafted:
        found = torch.isfinite(self.best_d)
        out = torch.where(found.view(-1, 1, 1, 1), self.best, adv)
        its = torch.where(found, self.best_it, torch.full_like(self.best_it, self.offset + it))
        return Crafted(out, its)


class InterpretationAttack(Attack):
    """What ADV2, AdvEdge and AdvEdge+ share in every framework (PGD here, C&W in
    :mod:`.cw`, StAdv in :mod:`.stadv`): the interpretation term, the variant's edge weights
    per stage, the stage-2 schedule of c, label smoothing, keep-the-best, the seed of the
    per-sample draws. Targeted only. A framework implements :meth:`Attack.forward` with
    :meth:`stage_weights`, :meth:`stage2_loss` and :class:`KeepBest`."""

    requires_target = True
    #: the framework's name in attack ids (``{framework}-{interpreter}-{variant}``)
    framework: str = ""

    def __init__(self, model: nn.Module, eps: float | None, *,
                 term: InterpretationTerm | None = None, variant: str = "adv2",
                 phi: float = 0.1, stage1_steps: int = 300,
                 stage2: Sequence = ((0.001, 301), (0.004, 201), (0.01, 101), (0.05, 101),
                                     (0.07, 50)),
                 edge_stages: str = "paper", smoothing: str = "paper",
                 smoothing_low: float = 0.95, smoothing_span: float = 0.04,
                 keep_best: bool = True, keep_best_every: int = 10,
                 best_threshold: float = 0.8, map_reduction: str = "sum", seed: int = 0,
                 **kw):
        super().__init__(model, eps, **kw)
        check_choice("variant", variant, VARIANTS)
        check_choice("edge_stages", edge_stages, ("paper", "code"))
        check_choice("smoothing", smoothing, ("paper", "code", "none"))
        check_choice("map_reduction", map_reduction, ("sum", "mean"))
        self.term = term
        self.map_reduction = map_reduction
        self.variant, self.phi = variant, float(phi)
        self.stage1_steps = int(check_nonnegative("stage1_steps", stage1_steps))
        self.stage2 = parse_schedule(stage2)
        self.edge_stages, self.smoothing = edge_stages, smoothing
        self.smoothing_low, self.smoothing_span = float(smoothing_low), float(smoothing_span)
        self.keep_best = bool(keep_best)
        self.keep_best_every = check_steps("keep_best_every", keep_best_every)
        self.best_threshold = float(best_threshold)
        self.seed = int(seed)

    def hyperparameters(self) -> dict:
        h = super().hyperparameters()
        h["term"] = None if self.term is None else self.term.name
        return h

    def stage_weights(self, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """N_w of stage 1 and stage 2, (N, 1, H, W) each, None where all ones (ADV2; stage 2
        under ``edge_stages="code"``)."""
        w1 = None if self.variant == "adv2" else edge_weights(sobel_edges(x), self.variant,
                                                               self.phi)
        return w1, (w1 if self.edge_stages == "paper" else None)

    def smoothing_draws(self, x: Tensor) -> Tensor | None:
        """The (N, stage-2 steps) uniforms of label smoothing, None without smoothing."""
        if self.smoothing == "none" or not self.stage2:
            return None
        return _sample_uniforms(x, self.seed, sum(s for _, s in self.stage2))

    def schedule(self):
        """Yield ``(phase, j, steps, c, it)`` for every stage-2 step: the phase index, the step
        within it, its length, c (ramped) and the 0-based step overall."""
        it = 0
        for phase, ((c0, c1), steps) in enumerate(self.stage2):
            for j in range(steps):
                yield phase, j, steps, c0 + (c1 - c0) * (j / (steps - 1) if steps > 1 else 0.0), it
                it += 1

    def stage2_loss(self, a: Tensor, state, target: Tensor, c: float, j: int, steps: int,
                    u: Tensor | None, it: int) -> tuple[Tensor, Tensor]:
        """Per-sample stage-2 objective at the adversarial images ``a`` (in the graph):
        label-smoothed CE (or CE) + c x l_int + the term's extra, and the logits. l_int is the
        summed squared map difference (eq. 7), or its mean per map element under
        ``map_reduction="mean"``."""
        if self.term is not None and (c > 0 or self.term.has_extra):
            logits, l_int, l_extra = self.term.loss(a, state)
        else:
            logits, l_int, l_extra = self.model(a), None, None
        loss = self.prd_loss(logits, target, j, steps, u, it)
        if l_int is not None:
            if self.map_reduction == "mean":     # the notebooks' CAM/RTS C&W and StAdv losses
                l_int = l_int / state["m_t"][0].numel()
            loss = loss + c * l_int
        if l_extra is not None:
            loss = loss + l_extra
        return loss, logits

    def prd_loss(self, logits: Tensor, target: Tensor, j: int, steps: int, u: Tensor | None,
                 it: int) -> Tensor:
        """The classification loss of stage 2 (l_prd), per sample: CE against the smoothed
        labels of step ``j`` of a ``steps``-long phase, or plain CE."""
        if self.smoothing == "none":
            return F.cross_entropy(logits, target, reduction="none")
        low = self.smoothing_low + self.smoothing_span * j / steps
        conf = low + (1 - low) * u[:, it]
        others = logits.shape[1] - 1 if self.smoothing == "paper" else 9
        return smoothed_ce(logits, target, conf, others)


class OptimizerAttack(InterpretationAttack):
    """An interpretation-aware attack that optimises a variable with Adam (C&W: w in tanh
    space; StAdv: a flow field) rather than stepping on the image: :meth:`optimize` runs stage
    1 or stage 2 on ``image(var) -> adversarial images`` plus a per-sample ``penalty(a, var)``
    (the distance or flow term), a fresh optimiser per stage-2 phase (authors' code)."""

    def __init__(self, model: nn.Module, eps: None = None, *, lr: float = 0.01,
                 amsgrad: bool = True, prd_weight: float = 1.0, **kw):
        super().__init__(model, eps, **kw)
        self.lr = check_nonnegative("lr", lr)
        self.amsgrad = bool(amsgrad)
        self.prd_weight = check_nonnegative("prd_weight", prd_weight)

    def _optimizer(self, var: Tensor) -> torch.optim.Optimizer:
        return torch.optim.Adam([var], lr=self.lr, amsgrad=self.amsgrad)

    @staticmethod
    def _step(opt: torch.optim.Optimizer, var: Tensor, loss: Tensor) -> None:
        # gradients of the variable only (nothing reaches the model's parameters)
        (var.grad,) = torch.autograd.grad(loss.sum(), var)
        opt.step()

    def prd_loss(self, logits, target, j, steps, u, it):
        """``prd_weight`` x the shared stage-2 classification loss."""
        return self.prd_weight * super().prd_loss(logits, target, j, steps, u, it)

    def stage1(self, var: Tensor, image, loss) -> Tensor:
        """``stage1_steps`` Adam steps on ``loss(a, logits)`` (per sample) at ``a = image(var)``;
        returns the images after the last step (detached)."""
        opt = self._optimizer(var)
        for _ in range(self.stage1_steps):
            a = image(var)
            self._step(opt, var, loss(a, self.model(a)))
        with torch.no_grad():
            return image(var)

    def stage2_optimize(self, var: Tensor, image, penalty, batch: AttackBatch,
                        adv: Tensor) -> Crafted:
        """Stage 2 from the stage-1 images ``adv``: per step, the shared objective
        (:meth:`stage2_loss`) plus ``penalty(a, var)``; keep-the-best; MASK's state updates."""
        x, t = batch.x, batch.target
        state = self.term.begin(x, batch.y, t) if self.term is not None else None
        u = self.smoothing_draws(x)
        best = KeepBest(self, adv, self.stage1_steps)
        it, phase_now, opt = 0, None, None
        for phase, j, steps, c, it in self.schedule():
            if phase != phase_now:                       # a fresh optimiser per c
                opt, phase_now = self._optimizer(var), phase
            a = image(var)
            loss, _ = self.stage2_loss(a, state, t, c, j, steps, u, it)
            self._step(opt, var, loss + penalty(a, var))
            with torch.no_grad():
                adv = image(var)
            if self.term is not None:
                self.term.after_step(adv, state, it + 1)
            best.update(adv, state, it + 1)
        return best.result(adv, it + 1)


class InterpretationPGD(InterpretationAttack):
    """ADV2 / AdvEdge / AdvEdge+ with PGD (see the module docstring). Targeted only: pass
    ``target=`` or a ``target_fn``. ``term=None`` (no interpreter) leaves the classification
    loss alone (a plain targeted PGD, the reference row); ``c = 0`` skips the map."""

    framework = "pgd"

    def __init__(self, model: nn.Module, eps: float = 0.031, *, alpha: float = 1 / 255,
                 step: str = "sign", max_step: float = 0.08, search: str = "sample",
                 search_steps: int = 5, confidence: float = 0.9, beta: float = 0.05, **kw):
        super().__init__(model, eps, **kw)
        check_choice("step", step, ("sign", "l2"))
        check_choice("search", search, ("sample", "batch", "none"))
        self.alpha = check_nonnegative("alpha", alpha)
        self.step, self.search = step, search
        self.max_step = check_nonnegative("max_step", max_step)
        self.search_steps = check_steps("search_steps", search_steps)
        self.confidence = float(confidence)
        self.beta = check_nonnegative("beta", beta)

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
        margin = margin_loss(logits.flatten(0, 1), t.repeat(k), math.inf).view(k, n)
        ok = (margin.sum(1) < -1).tolist()
        return cands[ok.index(True) if True in ok else k - 1]

    def _class_grad(self, adv: Tensor, target: Tensor) -> Tensor:
        adv = adv.detach().requires_grad_(True)
        loss = F.cross_entropy(self.model(adv), target, reduction="sum")
        return torch.autograd.grad(loss, adv)[0]

    # ------------------------------------------------------------------ attack

    def forward(self, batch: AttackBatch) -> Crafted:
        x, t = batch.x, batch.target
        w1, w2 = self.stage_weights(x)
        adv = x.clone()
        for _ in range(self.stage1_steps):
            # stage 1 is signed PGD on CE for every interpreter (MASK included)
            g = self._class_grad(adv, t)
            adv = self._step(adv, g, w1, batch, sign=True).detach()
        if not self.stage2:
            return Crafted(adv, self.stage1_steps)

        state = self.term.begin(x, batch.y, t) if self.term is not None else None
        u = self.smoothing_draws(x)
        best = KeepBest(self, adv, self.stage1_steps)
        it = 0
        for _, j, steps, c, it in self.schedule():
            a = adv.detach().requires_grad_(True)
            loss, _ = self.stage2_loss(a, state, t, c, j, steps, u, it)
            (g,) = torch.autograd.grad(loss.sum(), a)
            adv = self._step(adv, g, w2, batch).detach()
            if self.term is not None:
                self.term.after_step(adv, state, it + 1)
            best.update(adv, state, it + 1)
        return best.result(adv, it + 1)
