"""MASK, the meaningful-perturbation interpreter (Fong & Vedaldi 2017), batched, plus the pieces
of AdvEdge's bi-level MASK attack (AdvEdge paper, Section IV-F, eqs. 12-13 (papers/advedge.txt);
settings: docs/settings.md#advedge, rows "MASK interpreter" and "MASK attack").

A low-resolution mask ``m`` (N, 1, s, s) in [0, 1] is bilinearly upsampled to the image size
(``M``, ``align_corners=False``) and blends the image with a blurred copy of itself::

    Phi(x; m) = x * M + blur(x) * (1 - M)            (m = 1 keeps a pixel, m = 0 deletes it)

and the mask solves (eq. 12, with the smoothness term of the authors' code)::

    L(m; x) = l1_coeff * mean|1 - m| + tv_coeff * TV_beta(m) + softmax(f(Phi(x; m)))_t

    TV_beta(m) = sum_{i<s-1, j<s-1} ((m[i+1,j] - m[i,j])^2 + (m[i,j+1] - m[i,j])^2 + 1e-8)^(beta/2)

(the mean of the L1 term and the *sum* of the TV term are the scales the coefficients were set
for in the authors' code, docs/settings.md#advedge). The explanation is the saliency
``1 - M`` (large = the pixels whose deletion lowers the class probability).

Functions (all batched over N with no per-sample Python loop, on the inputs' device):

* :func:`blur`: separable Gaussian blur with reflect padding;
* :func:`mask_objective`: ``L`` per image (N,), differentiable w.r.t. ``x`` and ``m``;
* :func:`unrolled_mask_steps`: ``steps`` plain gradient steps on ``m`` (eq. 13), optionally
  kept in the graph w.r.t. ``x`` (``create_graph=True``) for the attack's interpretation loss;
* :func:`solve_masks`: Adam on ``sum_n L_n``, each image's mask moving independently of the
  others (Adam is element-wise), with optional per-image early stopping;
* :class:`Mask`: the :class:`~xaisec.explainers.base.Explainer` (``name = "mask"``).

Every image's objective depends on that image only as long as the model treats the samples of a
batch independently (eval mode, no batch-statistics defense); the model's mode is never changed.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaisec.explainers.base import Explainer, Explanation, resolve_target
from xaisec.explainers.hooks import upsample

__all__ = ["Mask", "blur", "gaussian_kernel1d", "mask_objective", "solve_masks", "tv_norm",
           "unrolled_mask_steps"]

# Defaults: docs/settings.md#advedge, row "MASK interpreter" (values of the authors' code, the
# ImageNet setting at 224 px; at 32x32 the config passes a smaller mask and blur).
MASK_SIZE = 28  # 28x28 mask (docs/settings.md#advedge, "MASK interpreter")
MASK_INIT = 0.5  # mask initialised to 0.5 (docs/settings.md#advedge, "MASK interpreter")
ITERATIONS = 500  # Adam iterations (docs/settings.md#advedge, "MASK interpreter")
LR = 0.1  # Adam learning rate (docs/settings.md#advedge, "MASK interpreter")
L1_COEFF = 1e-2  # weight of mean|1 - m| (lambda of eq. 12; docs/settings.md#advedge)
TV_COEFF = 1e-4  # weight of TV_beta(m) (docs/settings.md#advedge, "MASK interpreter")
TV_BETA = 3.0  # TV exponent beta (docs/settings.md#advedge, "MASK interpreter")
TV_EPS = 1e-8  # inside the TV power, keeps it twice differentiable at 0 (authors' code)
BLUR_KERNEL = 11  # Gaussian blur kernel size (docs/settings.md#advedge, "MASK interpreter")
BLUR_SIGMA = 10.0  # Gaussian blur sigma (docs/settings.md#advedge, "MASK interpreter")
PATIENCE = 20  # early-stopping window; unused with stop_tol=None, the paper's fixed 500 steps
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults (the authors' code uses them)
ADAM_EPS = 1e-8  # torch.optim.Adam's default


def gaussian_kernel1d(kernel_size: int, sigma: float, *, dtype=None, device=None) -> Tensor:
    """The normalised 1-D Gaussian ``exp(-(i - c)^2 / (2 sigma^2))``, ``c = (k - 1) / 2``,
    ``i = 0..k-1``, summing to 1; its outer product with itself is the 2-D kernel."""
    k = int(kernel_size)
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    i = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    g = torch.exp(-(i * i) / (2.0 * float(sigma) ** 2))
    return (g / g.sum()).to(dtype=dtype or torch.get_default_dtype(), device=device)


def blur(x: Tensor, kernel_size: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> Tensor:
    """Gaussian blur of ``x`` (N, C, H, W), each channel separately: a horizontal then a
    vertical 1-D convolution (equal to the 2-D kernel, the outer product of the 1-D one).

    Borders: **reflect** padding by ``kernel_size // 2`` (mirror without repeating the edge
    pixel, as the authors' code pads), so H and W must exceed ``kernel_size // 2``. A constant
    image stays that constant. Differentiable w.r.t. ``x``."""
    if x.dim() != 4:
        raise ValueError("x must have shape (N, C, H, W)")
    k = int(kernel_size)
    g = gaussian_kernel1d(k, sigma, dtype=x.dtype, device=x.device)
    if k == 1:
        return x
    c, p = x.shape[1], k // 2
    if min(x.shape[-2:]) <= p:
        raise ValueError(f"reflect padding by {p} needs images larger than {p} pixels, "
                         f"got {tuple(x.shape[-2:])}")
    xp = F.pad(x, (p, p, p, p), mode="reflect")
    xp = F.conv2d(xp, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(xp, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def tv_norm(m: Tensor, beta: float = TV_BETA, eps: float = TV_EPS) -> Tensor:
    """Per-image total variation of masks (N, 1, h, w): the sum over pixels of
    ``(dy^2 + dx^2 + eps)^(beta/2)`` with forward differences, on the (h-1) x (w-1) pixels that
    have both (the isotropic TV_beta of Fong & Vedaldi 2017; ``eps`` as in the authors' code
    keeps it smooth where the mask is flat). Returns (N,)."""
    dy = m[:, :, 1:, :-1] - m[:, :, :-1, :-1]
    dx = m[:, :, :-1, 1:] - m[:, :, :-1, :-1]
    return (dy * dy + dx * dx + eps).pow(beta / 2.0).flatten(1).sum(1)


def _check_mask(x: Tensor, m: Tensor) -> None:
    if x.dim() != 4:
        raise ValueError("x must have shape (N, C, H, W)")
    if m.dim() != 4 or m.shape[0] != x.shape[0] or m.shape[1] != 1:
        raise ValueError(f"mask must have shape (N, 1, h, w) with N = {x.shape[0]}, "
                         f"got {tuple(m.shape)}")


def mask_objective(
    model: nn.Module,
    x: Tensor,
    m: Tensor,
    target: Tensor,
    *,
    l1_coeff: float = L1_COEFF,
    tv_coeff: float = TV_COEFF,
    tv_beta: float = TV_BETA,
    blur_kernel: int = BLUR_KERNEL,
    blur_sigma: float = BLUR_SIGMA,
    blurred: Tensor | None = None,
) -> Tensor:
    """MASK's objective (AdvEdge paper, Section IV-F, eq. 12 (papers/advedge.txt)) per image:

    ``l1_coeff * mean|1 - m| + tv_coeff * TV_beta(m) + softmax(model(Phi(x; m)))[target]``

    ``x`` (N, C, H, W) in [0, 1]; ``m`` (N, 1, h, w), upsampled bilinearly to (H, W);
    ``target`` LongTensor (N,); ``blurred``: ``blur(x)`` if already computed (it must be the
    blur of this ``x``; pass one that is in the graph to differentiate through it), else
    ``blur(x, blur_kernel, blur_sigma)`` is computed here. Returns (N,), differentiable w.r.t.
    both ``x`` and ``m`` (twice, for :func:`unrolled_mask_steps` with ``create_graph``)."""
    _check_mask(x, m)
    if blurred is None:
        blurred = blur(x, blur_kernel, blur_sigma)
    big = upsample(m, x.shape[-2:])
    phi = blurred + big * (x - blurred)  # = x * M + blur(x) * (1 - M)
    prob = torch.softmax(model(phi), 1).gather(1, target.view(-1, 1)).squeeze(1)
    l1 = (1 - m).abs().flatten(1).mean(1)
    return l1_coeff * l1 + tv_coeff * tv_norm(m, tv_beta) + prob


def _targets(model: nn.Module, x: Tensor, target) -> Tensor:
    """``target`` as a LongTensor (N,); ``None`` costs one no-grad forward pass (argmax)."""
    if target is not None and isinstance(target, Tensor) and target.dim() == 1:
        t = target.to(x.device).long()
        if t.shape != (x.shape[0],):
            raise ValueError(f"target must have shape ({x.shape[0]},), got {tuple(t.shape)}")
        return t
    with torch.no_grad():
        logits = model(x.detach())
    return resolve_target(target, logits)


def unrolled_mask_steps(
    model: nn.Module,
    x: Tensor,
    m: Tensor,
    target,
    steps: int,
    lr: float,
    *,
    create_graph: bool,
    l1_coeff: float = L1_COEFF,
    tv_coeff: float = TV_COEFF,
    tv_beta: float = TV_BETA,
    blur_kernel: int = BLUR_KERNEL,
    blur_sigma: float = BLUR_SIGMA,
    blurred: Tensor | None = None,
) -> list[Tensor]:
    """``steps`` plain gradient-descent steps on the mask, ``m_{j+1} = clamp(m_j - lr *
    dL/dm(m_j; x), 0, 1)`` with ``L`` = :func:`mask_objective` (summed over the batch, so each
    image's step uses its own gradient): the differentiable approximation of the inner argmin
    of the bi-level attack (AdvEdge paper, Section IV-F, eq. 13, and Section V-A, "the
    interpretation loss sum_j ||m_j - m_t||^2" (papers/advedge.txt); docs/settings.md#advedge).

    Returns ``[m_1, ..., m_steps]`` (``m_0 = m`` is not included; ``steps=0`` gives ``[]``).
    ``create_graph=True``: every ``m_j`` stays in the autograd graph w.r.t. ``x`` (pass an ``x``
    that requires grad; second-order terms through dL/dm are kept) and w.r.t. ``m`` if it
    requires grad. ``create_graph=False``: detached masks. ``target``: as
    :func:`~xaisec.explainers.base.resolve_target` takes it (``None``: the argmax class of
    ``x``). ``blurred``: ``blur(x)``, computed once here if not given (in the graph w.r.t. ``x``
    when ``create_graph``)."""
    _check_mask(x, m)
    steps = int(steps)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if steps == 0:
        return []
    t = _targets(model, x, target)
    coeffs = dict(l1_coeff=l1_coeff, tv_coeff=tv_coeff, tv_beta=tv_beta)
    out = []
    with torch.enable_grad():
        if not create_graph:
            x = x.detach()
            blurred = None if blurred is None else blurred.detach()
        if blurred is None:
            blurred = blur(x, blur_kernel, blur_sigma)
        cur = m if (create_graph and m.requires_grad) else m.detach().requires_grad_(True)
        for _ in range(steps):
            obj = mask_objective(model, x, cur, t, blurred=blurred, **coeffs)
            (g,) = torch.autograd.grad(obj.sum(), cur, create_graph=create_graph)
            nxt = (cur - lr * g).clamp(0.0, 1.0)
            if create_graph:
                out.append(nxt)
                cur = nxt
            else:
                out.append(nxt.detach())
                cur = nxt.detach().requires_grad_(True)
    return out


def _adam_step(p: Tensor, g: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int,
               lr: float) -> None:
    """One Adam update in place (torch.optim.Adam's formula, default betas and eps, no weight
    decay); ``step`` counts from 1. Element-wise, so rows of a batch are independent."""
    b1, b2 = ADAM_BETAS
    exp_avg.lerp_(g, 1 - b1)
    exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (exp_avg_sq.sqrt() / math.sqrt(1 - b2 ** step)).add_(ADAM_EPS)
    p.addcdiv_(exp_avg, denom, value=-lr / (1 - b1 ** step))


def solve_masks(
    model: nn.Module,
    x: Tensor,
    target=None,
    *,
    iterations: int = ITERATIONS,
    lr: float = LR,
    init: Tensor | float | None = None,
    mask_size: int = MASK_SIZE,
    stop_tol: float | None = None,
    patience: int = PATIENCE,
    l1_coeff: float = L1_COEFF,
    tv_coeff: float = TV_COEFF,
    tv_beta: float = TV_BETA,
    blur_kernel: int = BLUR_KERNEL,
    blur_sigma: float = BLUR_SIGMA,
) -> tuple[Tensor, dict]:
    """MASK's masks for a batch: Adam (``lr``, torch's default betas) on the sum over images of
    :func:`mask_objective`, the mask clamped to [0, 1] after each step (AdvEdge paper, Section
    IV-F (papers/advedge.txt); settings: docs/settings.md#advedge, "MASK interpreter").

    Since the objective is a sum of per-image terms and Adam is element-wise, each image's mask
    follows exactly the path it would follow when solved alone (eval-mode models): in float64
    the two agree to rounding (1e-14). In float32 a batched and a single-image forward pass
    round differently, and the optimisation amplifies that (ReLU kinks, Adam's normalised
    steps): on a random ResNet-20 masks differ by up to ~0.3 after 20 steps, so a float32 mask
    depends on the batch it was solved in at that level.

    ``x`` (N, C, H, W) in [0, 1] (detached); ``target``: see
    :func:`~xaisec.explainers.base.resolve_target` (``None``: the argmax class);
    ``init``: ``None`` (a ``mask_size`` x ``mask_size`` mask filled with 0.5), a float (filled
    with it) or a tensor (N, 1, h, w) to start from (e.g. a previous solution; copied, its size
    overrides ``mask_size``).

    Early stopping, per image: with ``stop_tol`` set, an image whose objective improved by less
    than ``stop_tol`` over the last ``patience`` iterations (objective ``patience`` iterations
    ago minus the current one) is frozen before its next step: its mask no longer changes and
    it leaves the forward passes; the others continue. ``stop_tol=None`` (the paper's fixed
    number of iterations) never freezes.

    Returns ``(m, info)``: the masks (N, 1, h, w) in [0, 1], detached, in ``x``'s dtype;
    ``info["iterations"]`` LongTensor (N,) the Adam steps each mask took,
    ``info["objective"]`` (N,) the objective of the returned masks and
    ``info["initial_objective"]`` (N,) that of the initial masks."""
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError("x must be a floating-point tensor of shape (N, C, H, W)")
    iterations, patience = int(iterations), int(patience)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if stop_tol is not None and patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    x = x.detach()
    n = x.shape[0]
    t = _targets(model, x, target)
    if isinstance(init, Tensor):
        m = init.detach().to(device=x.device, dtype=x.dtype).clone()
        _check_mask(x, m)
    else:
        fill = MASK_INIT if init is None else float(init)
        m = torch.full((n, 1, int(mask_size), int(mask_size)), fill, dtype=x.dtype,
                       device=x.device)
    m.clamp_(0.0, 1.0)
    coeffs = dict(l1_coeff=l1_coeff, tv_coeff=tv_coeff, tv_beta=tv_beta)
    blurred = blur(x, blur_kernel, blur_sigma)
    exp_avg, exp_avg_sq = torch.zeros_like(m), torch.zeros_like(m)
    steps_done = torch.zeros(n, dtype=torch.long, device=x.device)
    initial = None
    # objectives of the last patience + 1 iterations (a ring buffer), for early stopping
    hist = (torch.full((patience + 1, n), float("inf"), dtype=x.dtype, device=x.device)
            if stop_tol is not None else None)
    idx = None  # None: every image is active (no gathering)
    with torch.enable_grad():
        for it in range(iterations):
            if idx is None:
                xs, bs, ts, ms = x, blurred, t, m
            else:
                xs, bs, ts, ms = x[idx], blurred[idx], t[idx], m[idx]
            ms = ms.detach().requires_grad_(True)
            obj = mask_objective(model, xs, ms, ts, blurred=bs, **coeffs)
            (g,) = torch.autograd.grad(obj.sum(), ms)
            obj = obj.detach()
            if it == 0:
                initial = obj.clone()
            if hist is not None:
                rows = slice(None) if idx is None else idx
                old = hist[(it + 1) % (patience + 1), rows]  # patience iterations ago
                hist[it % (patience + 1), rows] = obj
                if it >= patience:
                    keep = (old - obj) >= stop_tol
                    if not bool(keep.all()):
                        active = torch.arange(n, device=x.device) if idx is None else idx
                        idx, g = active[keep], g[keep]
                        if idx.numel() == 0:
                            break
            if idx is None:
                _adam_step(m, g, exp_avg, exp_avg_sq, it + 1, lr)
                m.clamp_(0.0, 1.0)
                steps_done += 1
            else:
                # every active image has taken exactly `it` steps, so the shared count is right
                p, a, s = m[idx], exp_avg[idx], exp_avg_sq[idx]
                _adam_step(p, g, a, s, it + 1, lr)
                m[idx], exp_avg[idx], exp_avg_sq[idx] = p.clamp_(0.0, 1.0), a, s
                steps_done[idx] += 1
    with torch.no_grad():
        final = mask_objective(model, x, m, t, blurred=blurred, **coeffs)
    info = {"iterations": steps_done, "objective": final,
            "initial_objective": final.clone() if initial is None else initial}
    return m.detach(), info


class Mask(Explainer):
    """MASK, meaningful perturbation (Fong & Vedaldi 2017), the perturbation-guided interpreter
    of the AdvEdge paper (Section IV-F, eq. 12 (papers/advedge.txt); settings:
    docs/settings.md#advedge, "MASK interpreter"), shape (N, 1, H, W).

    The map is the saliency ``1 - M``: the mask found by :func:`solve_masks` (``mask_size`` x
    ``mask_size``, Adam, ``iterations`` steps), bilinearly upsampled to the input size, in
    [0, 1], large where deleting (blurring) the pixels lowers the class probability.
    ``extra``: ``"mask"`` the low-resolution mask ``m`` (N, 1, s, s), ``"iterations"`` the
    steps taken per image (N,), ``"objective"`` the final objective per image (N,).

    Not differentiable (the map comes from an optimisation): the bi-level attack uses
    :func:`mask_objective` and :func:`unrolled_mask_steps` instead of ``create_graph``.
    Deterministic. Config: the ``mask`` sub-section of a settings section (base class
    :meth:`settings_kwargs`), e.g. a smaller ``mask_size`` and blur at 32x32.
    """

    name = "mask"
    map_channels = 1
    differentiable = False
    #: each image's solve is its own in exact arithmetic (equal in float64), but in float32
    #: Adam's normalised steps amplify the different rounding of batched and single forward
    #: passes, so a mask depends on the batch it was solved in
    batch_independent = False

    def __init__(
        self,
        model: nn.Module,
        mask_size: int = MASK_SIZE,  # 28x28 at 224 px: docs/settings.md#advedge
        iterations: int = ITERATIONS,  # 500: docs/settings.md#advedge
        lr: float = LR,  # Adam 0.1: docs/settings.md#advedge
        l1_coeff: float = L1_COEFF,  # 1e-2: docs/settings.md#advedge
        tv_coeff: float = TV_COEFF,  # 1e-4: docs/settings.md#advedge
        tv_beta: float = TV_BETA,  # 3: docs/settings.md#advedge
        blur_kernel: int = BLUR_KERNEL,  # 11: docs/settings.md#advedge
        blur_sigma: float = BLUR_SIGMA,  # 10: docs/settings.md#advedge
        stop_tol: float | None = None,  # None: the paper's fixed iteration count
        patience: int = PATIENCE,  # this project's choice; used only with stop_tol
    ):
        super().__init__(model)
        if int(mask_size) < 1:
            raise ValueError(f"mask_size must be a positive int, got {mask_size}")
        gaussian_kernel1d(blur_kernel, blur_sigma)  # checks the blur settings
        self.mask_size = int(mask_size)
        self.iterations = int(iterations)
        self.lr = float(lr)
        self.l1_coeff, self.tv_coeff = float(l1_coeff), float(tv_coeff)
        self.tv_beta = float(tv_beta)
        self.blur_kernel, self.blur_sigma = int(blur_kernel), float(blur_sigma)
        self.stop_tol = None if stop_tol is None else float(stop_tol)
        self.patience = int(patience)

    def solver_kwargs(self) -> dict:
        """This explainer's settings as keyword arguments of :func:`solve_masks` (the attack
        re-solves masks with the same settings)."""
        return dict(iterations=self.iterations, lr=self.lr, mask_size=self.mask_size,
                    stop_tol=self.stop_tol, patience=self.patience,
                    **self.objective_kwargs())

    def objective_kwargs(self) -> dict:
        """Keyword arguments of :func:`mask_objective` and :func:`unrolled_mask_steps`."""
        return dict(l1_coeff=self.l1_coeff, tv_coeff=self.tv_coeff, tv_beta=self.tv_beta,
                    **self.blur_settings())

    def blur_settings(self) -> dict:
        """``{"blur_kernel": ..., "blur_sigma": ...}``, as the functions above take them."""
        return {"blur_kernel": self.blur_kernel, "blur_sigma": self.blur_sigma}

    def solve(self, x: Tensor, target=None, **overrides) -> Tensor:
        """The low-resolution masks (N, 1, s, s) of ``x`` for ``target`` with this explainer's
        settings, any of them overridden by keyword (e.g. ``iterations``, ``init``): the
        attack's re-solve of the current image (a fresh Adam state each call)."""
        return solve_masks(self.model, x, target, **{**self.solver_kwargs(), **overrides})[0]

    def _attribute(self, x, target, create_graph):
        x = x.detach()
        with torch.no_grad():
            logits = self.model(x)
        t = resolve_target(target, logits)
        m, info = solve_masks(self.model, x, t, **self.solver_kwargs())
        sal = (1.0 - upsample(m, x.shape[-2:])).clamp(0.0, 1.0).to(x.dtype)
        return Explanation(sal, logits.detach(), t,
                           {"mask": m, "iterations": info["iterations"],
                            "objective": info["objective"]})
