"""EXIAA: explainable injections for adversarial attack (Pesce, Wei & Mengaldo), batched.

The attack has three phases (paper, section 3), each a function here:

1. attack image selection (sec. 3.1): the running-up class
   ``y_r = argmax_{j != y*} f_j(x)`` (:func:`running_up`) and the pool images of class ``y_r``
   ranked by ``f_{y_r}`` (:func:`class_rankings`, :func:`select_attack_images`); the paper takes
   the 3 most confident ones, Appendix A compares ranks 95-100;
2. feature extraction (sec. 3.2): the index set ``I_k`` of the top-``k`` positive attributions
   of the attack image's explanation ``z_bar = E(x_bar; f)`` (:func:`topk_masks`);
3. feature injection (sec. 3.3, equation 5): ``x_hat = clip((1 - alpha) x + alpha x_bar)`` on
   ``I_k``, ``x`` elsewhere (:func:`inject`).

Metrics (sec. 2 and 4): the percentage change of the explanation (equation 2 on the scale of
Figure 2, :func:`explanation_change`), the absolute change of the confidence of the originally
predicted class (equation 3, Figure 4, :func:`confidence_change`) and SSIM (equation 1 /
equation 4, Figure 3, :func:`ssim`, identical to scikit-image's default). :func:`run_grid` runs
the whole experiment (all images x attack images x alpha x top-k, attack and the Gaussian-noise
baseline of :func:`noise_baseline`) and returns one row per grid point.

Conventions: images are float tensors ``(N, C, H, W)`` in ``[0, 1]`` (the models normalise
internally); the device comes from the inputs; "elements" are the ``C * H * W`` entries
``(w, h, c)`` of an image, as in the paper (injection is per channel, not per pixel).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "GRID_COLUMNS",
    "class_rankings",
    "confidence_change",
    "explanation_change",
    "inject",
    "noise_baseline",
    "other_classes",
    "random_positions",
    "run_grid",
    "running_up",
    "select_attack_images",
    "ssim",
    "topk_counts",
    "topk_masks",
]

#: Columns of the :func:`run_grid` data frame, in order.
GRID_COLUMNS = (
    "image",
    "attack_index",
    "rank",
    "alpha",
    "topk",
    "method",
    "explanation_change",
    "ssim",
    "confidence_change",
    "pred_orig",
    "pred_corrupted",
    "runner_up",
    "attack_pred",
    "attack_label",
    "n_injected",
    "n_changed",
)


# ----------------------------------------------------------------------------------------------
# Phase one: attack image selection (sec. 3.1)
# ----------------------------------------------------------------------------------------------


def running_up(logits: Tensor) -> tuple[Tensor, Tensor]:
    """The predicted class ``y* = argmax_j f_j(x)`` and the running-up class
    ``y_r = argmax_{j != y*} f_j(x)`` (sec. 3.1, the two equations before ``x_bar``).

    ``logits`` (N, J), logits or probabilities (the order is the same). Returns two LongTensors
    (N,). ``y*`` is ``logits.argmax(1)`` (the class our explainers explain for ``target=None``);
    ``y_r`` is the argmax of the other classes, i.e. the second entry of ``topk(2)`` (on exact
    ties the lowest index wins, as for argmax).
    """
    logits = torch.as_tensor(logits)
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ValueError("logits must have shape (N, J) with J >= 2")
    pred = logits.argmax(1)
    rest = logits.detach().double().clone()
    rest.scatter_(1, pred[:, None], float("-inf"))
    return pred, rest.argmax(1)


def other_classes(pred: Tensor, runner_up: Tensor, num_classes: int) -> Tensor:
    """Every class except the prediction and the running-up class, per image: LongTensor
    (N, J - 2), ascending (the attack classes of the paper's Figure 5, "all the other classes")."""
    pred = torch.as_tensor(pred).long().reshape(-1)
    runner_up = torch.as_tensor(runner_up, device=pred.device).long().reshape(-1)
    if pred.shape != runner_up.shape:
        raise ValueError("pred and runner_up must have the same length")
    if (pred == runner_up).any():
        raise ValueError("pred and runner_up must differ for every image")
    if ((pred < 0) | (pred >= num_classes) | (runner_up < 0) | (runner_up >= num_classes)).any():
        raise ValueError(f"classes out of range [0, {num_classes})")
    n = pred.shape[0]
    keep = torch.ones(n, num_classes, dtype=torch.bool, device=pred.device)
    rows = torch.arange(n, device=pred.device)
    keep[rows, pred] = False
    keep[rows, runner_up] = False
    classes = torch.arange(num_classes, device=pred.device).expand(n, num_classes)
    return classes[keep].reshape(n, num_classes - 2)


def class_rankings(probs, labels, num_classes: int) -> Tensor:
    """For each class ``c``: the pool images of true class ``c`` (``X_c``) sorted by descending
    ``f_c`` (sec. 3.1: ``x_bar = argmax_{x' in X_{y_r}} f_{y_r}(x')`` is the first entry of row
    ``y_r``).

    ``probs`` (P, J) the softmax probabilities of the pool (tensor or array), ``labels`` (P,)
    its true labels. Returns a LongTensor (J, M) of pool indices, ``M`` the largest class
    count, each row padded with -1 after its last image. Ties in ``f_c``: the lower pool index
    first (stable sort). On ``probs``' device.
    """
    probs = torch.as_tensor(probs)
    labels = torch.as_tensor(labels, device=probs.device).long().reshape(-1)
    if probs.dim() != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError("probs must be (P, J) and labels (P,)")
    if probs.shape[1] < num_classes:
        raise ValueError(f"probs has {probs.shape[1]} classes, fewer than num_classes={num_classes}")
    if labels.numel() and ((labels < 0) | (labels >= num_classes)).any():
        raise ValueError(f"labels out of range [0, {num_classes})")
    p = labels.shape[0]
    own = probs.gather(1, labels[:, None]).squeeze(1).double()  # f_{y_i}(x_i)
    by_score = torch.argsort(-own, stable=True)
    order = by_score[torch.argsort(labels[by_score], stable=True)]  # by class, then by -f_c
    counts = torch.bincount(labels, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    cls = labels[order]
    pos = torch.arange(p, device=probs.device) - starts[cls]
    m = int(counts.max()) if p else 0
    out = torch.full((num_classes, m), -1, dtype=torch.long, device=probs.device)
    out[cls, pos] = order
    return out


def select_attack_images(classes, rankings: Tensor, ranks: Sequence[int] = (0, 1, 2)) -> Tensor:
    """Pool indices of the images at 0-based ``ranks`` of each requested class's ranking.

    ``classes`` (N,) (or any shape S) LongTensor, typically the running-up classes;
    ``rankings`` from :func:`class_rankings`. Returns a LongTensor (N, R) (shape ``S + (R,)``).
    The paper uses the three most confident images, ``ranks=(0, 1, 2)``; Appendix A compares
    them with ranks 95-100 (``range(94, 100)`` 0-based). A class with too few pool images is a
    ValueError naming the class and its count.
    """
    rankings = torch.as_tensor(rankings)
    classes = torch.as_tensor(classes, device=rankings.device).long()
    r = torch.as_tensor(list(ranks), dtype=torch.long, device=rankings.device).reshape(-1)
    if (r < 0).any():
        raise ValueError("ranks must be >= 0")
    if classes.numel() and ((classes < 0) | (classes >= rankings.shape[0])).any():
        raise ValueError(f"classes out of range [0, {rankings.shape[0]})")
    counts = (rankings >= 0).sum(1)
    need = int(r.max()) + 1 if r.numel() else 0
    short = counts[classes.reshape(-1)] < need
    if short.any():
        c = int(classes.reshape(-1)[short][0])
        raise ValueError(
            f"class {c} has only {int(counts[c])} pool image(s); rank {need - 1} (0-based) "
            f"needs at least {need}"
        )
    return rankings[classes][..., r]


# ----------------------------------------------------------------------------------------------
# Phase two: feature extraction (sec. 3.2)
# ----------------------------------------------------------------------------------------------


def _check_topks(topks) -> Tensor:
    t = torch.as_tensor(list(topks) if not isinstance(topks, Tensor) else topks, dtype=torch.float64)
    t = t.reshape(-1)
    if t.numel() == 0 or ((t <= 0) | (t > 1)).any():
        raise ValueError("topks must be fractions in (0, 1]")
    return t


def topk_counts(npos: Tensor, topks) -> Tensor:
    """``|I_k|`` per image and fraction: ``round(k * n_pos)`` with ``n_pos`` the number of
    positive attributions, rounded half to even (as Python's ``round`` and ``torch.round``,
    computed in float64), then at least 1 when the image has a positive attribution (0
    otherwise). ``npos`` (N,) -> LongTensor (N, K)."""
    t = _check_topks(topks).to(npos.device)
    n = npos.double()[:, None]
    c = torch.round(t[None, :] * n)
    c = torch.where(n > 0, c.clamp(min=1), torch.zeros_like(c))
    return torch.minimum(c, n).long()


def _topk_ranks(attr: Tensor, topks) -> tuple[Tensor, Tensor]:
    """Rank of every element of each image (0 = largest positive attribution; positive elements
    come first, ties by flat index) and the counts (N, K) of :func:`topk_counts`; ``I_k`` is
    ``rank < count``. One stable argsort per image, shared by every ``k``."""
    if attr.dim() < 2:
        raise ValueError("attr must have shape (N, ...)")
    flat = attr.detach().reshape(attr.shape[0], -1)
    pos = flat > 0  # NaN is not positive
    key = torch.where(pos, flat.double(), torch.full_like(flat, float("-inf"), dtype=torch.float64))
    order = torch.argsort(key, dim=1, descending=True, stable=True)
    d = flat.shape[1]
    if d >= 2**31:
        raise ValueError("images with 2**31 elements or more are not supported")
    ranks = torch.empty_like(order, dtype=torch.int32)
    src = torch.arange(d, device=flat.device, dtype=torch.int32).expand_as(order)
    ranks.scatter_(1, order, src)
    return ranks, topk_counts(pos.sum(1), topks)


def topk_masks(attr: Tensor, topks: Sequence[float]) -> Tensor:
    """The index sets ``I_k`` of sec. 3.2 as boolean masks.

    ``attr`` (N, C, H, W), the attack images' explanations ``z_bar``; ``topks`` fractions in
    (0, 1]. ``I_k`` holds the ``round(k * n_pos)`` largest *positive* attributions of the image
    over all ``C * H * W`` elements (``n_pos`` its number of elements > 0; rounding half to even,
    at least 1 when ``n_pos > 0``, see :func:`topk_counts`): the arg max of
    ``sum_{(w,h,c) in I} z_bar_{w,h,c}`` over ``|I| = k``. Ties are broken by flat index
    (``c, h, w`` order), lower first, so the sets are deterministic and nested in ``k``.
    Returns a bool tensor (N, K, C, H, W).
    """
    ranks, counts = _topk_ranks(attr, topks)
    masks = ranks[:, None, :] < counts[:, :, None].to(torch.int32)
    return masks.reshape(attr.shape[0], counts.shape[1], *attr.shape[1:])


# ----------------------------------------------------------------------------------------------
# Phase three: feature injection (sec. 3.3)
# ----------------------------------------------------------------------------------------------


def _blend(x: Tensor, src: Tensor, mask: Tensor, alpha: Tensor) -> Tensor:
    """Equation 5 with broadcasting: ``where(mask, clip((1 - alpha) x + alpha src, 0, 1), x)``."""
    return torch.where(mask, ((1 - alpha) * x + alpha * src).clamp(0, 1), x)


def _alphas(alphas, like: Tensor) -> Tensor:
    a = torch.as_tensor(
        list(alphas) if not isinstance(alphas, Tensor) else alphas, dtype=like.dtype
    ).to(like.device).reshape(-1)
    if a.numel() == 0:
        raise ValueError("alphas must not be empty")
    return a


def inject(x: Tensor, x_attack: Tensor, masks: Tensor, alphas) -> Tensor:
    """Equation 5 over the whole (alpha, k) grid:
    ``x_hat = clip((1 - alpha) x + alpha x_bar, 0, 1)`` on ``I_k``, ``x`` elsewhere.

    ``x``, ``x_attack`` (N, C, H, W) in [0, 1]; ``masks`` (N, K, C, H, W) from
    :func:`topk_masks`; ``alphas`` (A,). Returns (N, A, K, C, H, W).
    """
    if x.shape != x_attack.shape or masks.shape[0] != x.shape[0] or masks.shape[2:] != x.shape[1:]:
        raise ValueError("x, x_attack must be (N, C, H, W) and masks (N, K, C, H, W)")
    a = _alphas(alphas, x).reshape(1, -1, 1, 1, 1, 1)
    return _blend(x[:, None, None], x_attack.to(x)[:, None, None], masks[:, None], a)


def _random_ranks(n: int, d: int, generator, device) -> Tensor:
    keys = torch.rand(n, d, generator=generator, device=device)
    order = torch.argsort(keys, dim=1, stable=True)
    ranks = torch.empty_like(order, dtype=torch.int32)
    ranks.scatter_(1, order, torch.arange(d, device=device, dtype=torch.int32).expand_as(order))
    return ranks


def random_positions(masks: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Masks with the same number of elements as ``masks`` (N, K, C, H, W) per (image, k), at
    uniformly random positions: one random permutation of the elements per image (drawn from
    ``generator``, on ``masks``' device), its first ``count[n, k]`` elements, so the random
    sets are nested in ``k`` like the attack's."""
    n, k = masks.shape[:2]
    counts = masks.reshape(n, k, -1).sum(2)
    d = masks[0, 0].numel() if n and k else 0
    ranks = _random_ranks(n, d, generator, masks.device)
    out = ranks[:, None, :] < counts[:, :, None].to(torch.int32)
    return out.reshape(masks.shape)


def _noise(shape, mean: float, std: float, generator, like: Tensor) -> Tensor:
    eps = torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    return eps * std + mean


def noise_baseline(
    x: Tensor,
    masks: Tensor,
    alphas,
    std: float = 1.0,
    mean: float = 0.0,
    positions: str = "attack",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The Gaussian-noise baseline, (N, A, K, C, H, W) like :func:`inject`.

    The paper only says the baseline is "computed by adding Gaussian noise to the original
    image". Our reading (an interpretation): equation 5 with the attack image replaced by a noise
    image ``eps ~ N(mean, std^2)`` per element, ``clip((1 - alpha) x + alpha eps, 0, 1)``, one
    ``eps`` per image shared by every (alpha, k), so that alpha plays the same role as in the
    attack. ``positions``: ``"attack"`` blends the noise into the attack's own elements ``I_k``
    (``masks``); ``"random"`` into the same *number* of elements per (image, k) at random
    positions (:func:`random_positions`). Draws ``eps`` first, then the positions, from
    ``generator`` (``None``: torch's global RNG) on ``x``'s device.
    """
    if positions not in ("attack", "random"):
        raise ValueError("positions must be 'attack' or 'random'")
    if masks.shape[0] != x.shape[0] or masks.shape[2:] != x.shape[1:]:
        raise ValueError("masks must be (N, K, C, H, W) for x (N, C, H, W)")
    eps = _noise(x.shape, mean, std, generator, x)
    if positions == "random":
        masks = random_positions(masks, generator)
    return inject(x, eps, masks, alphas)


# ----------------------------------------------------------------------------------------------
# Metrics (sec. 2 and 4)
# ----------------------------------------------------------------------------------------------


def explanation_change(z: Tensor, z_hat: Tensor) -> Tensor:
    """Percentage change of the explanation (sec. 4, "Explainability performance"; equation 2
    divided by the original explanation's mass): ``100 * sum |z - z_hat| / sum |z|``, the sums
    over the last three dimensions (C, H, W); leading dimensions broadcast, e.g. ``z``
    (N, 1, C, H, W) against ``z_hat`` (N, G, C, H, W). Computed in float64; an all-zero ``z``
    gives inf (or nan)."""
    z, z_hat = z.double(), z_hat.double()
    num = (z - z_hat).abs().sum(dim=(-3, -2, -1))
    den = z.abs().sum(dim=(-3, -2, -1))
    return 100.0 * num / den


def confidence_change(p_orig: Tensor, p_hat: Tensor, cls: Tensor | None = None) -> Tensor:
    """Absolute change of the confidence of the class predicted on the original image, in
    percentage points (equation 3; Figure 4 and the values with a down-arrow in Table 1):
    ``100 * |f_c(x) - f_c(x_hat)|``.

    ``p_orig`` (N, J) and ``p_hat`` (N, J) or (N, G..., J) probabilities (softmax), ``cls`` (N,)
    the class ``c`` (default: ``p_orig.argmax(1)``). Returns (N,) or (N, G...).
    """
    if p_orig.dim() != 2 or p_hat.shape[0] != p_orig.shape[0] or p_hat.shape[-1] != p_orig.shape[1]:
        raise ValueError("p_orig must be (N, J) and p_hat (N, ..., J)")
    if cls is None:
        cls = p_orig.argmax(1)
    cls = torch.as_tensor(cls, device=p_orig.device).long().reshape(-1)
    n, j = p_orig.shape
    po = p_orig.double().gather(1, cls[:, None]).squeeze(1)
    ph = p_hat.double().reshape(n, -1, j)
    ph = ph.gather(2, cls.to(ph.device)[:, None, None].expand(n, ph.shape[1], 1)).squeeze(2)
    out = 100.0 * (po.to(ph.device)[:, None] - ph).abs()
    return out.reshape(p_hat.shape[:-1])


def ssim(
    x: Tensor, y: Tensor, data_range: float = 1.0, win_size: int = 7, k1: float = 0.01, k2: float = 0.03
) -> Tensor:
    """Mean SSIM (equation 1) per image pair, ``(N, C, H, W)`` -> (N,) float64.

    Identical to ``skimage.metrics.structural_similarity(a, b, channel_axis=-1,
    data_range=1.0)`` with its defaults: a ``win_size`` x ``win_size`` (7) uniform window,
    ``c1 = (k1 L)^2``, ``c2 = (k2 L)^2`` with ``k1 = 0.01``, ``k2 = 0.03``, ``L = data_range``,
    sample (co)variances (the ``NP / (NP - 1)`` correction, ``NP = win_size^2``), the SSIM map
    averaged over the valid region (``(win_size - 1) / 2`` cropped at each border, i.e. the
    windows that lie inside the image) and over the channels. Computed in float64.
    """
    x, y = torch.broadcast_tensors(x, y)
    if x.dim() != 4:
        raise ValueError("x and y must have shape (N, C, H, W)")
    if win_size % 2 != 1 or win_size < 3:
        raise ValueError("win_size must be odd and >= 3")
    _, c, h, w = x.shape
    if min(h, w) < win_size:
        raise ValueError(f"images of {h}x{w} are smaller than the {win_size}x{win_size} window")
    a, b = x.double(), y.double()
    stats = F.avg_pool2d(torch.cat([a, b, a * a, b * b, a * b], 1), win_size, stride=1)
    ux, uy, uxx, uyy, uxy = stats.split(c, dim=1)
    npix = win_size * win_size
    cov_norm = npix / (npix - 1)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3))


# ----------------------------------------------------------------------------------------------
# The experiment (sec. 4)
# ----------------------------------------------------------------------------------------------


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _image_generator(seed: int, image: int, device: torch.device) -> torch.Generator:
    """A generator for one image, seeded from (seed, image position): the baseline's noise does
    not depend on the chunking nor on the other images."""
    s = int(np.random.SeedSequence([int(seed), int(image)]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(s)


def run_grid(
    model,
    explainer,
    x: Tensor,
    pool_x: Tensor,
    attack_idx: Tensor,
    alphas: Sequence[float],
    topks: Sequence[float],
    *,
    baseline: dict | None,
    explain_target: str = "corrupted",
    batch_size: int = 256,
    images_per_chunk: int = 8,
    seed: int = 0,
    progress: bool = True,
    pool_labels: Tensor | None = None,
):
    """Run EXIAA and its noise baseline on every image x attack image x alpha x top-k.

    ``x`` (N, C, H, W) the original images (its device is used throughout); ``pool_x``
    (P, C, H, W) the images the attack images come from (any device); ``attack_idx`` (N, R) the
    pool indices of each image's attack images (:func:`select_attack_images` of the running-up
    classes for the paper, of :func:`other_classes` for its Figure 5). ``explainer``: one of
    :mod:`xaisec.explainers` (its ``attribute(x, target)`` gives maps and logits); ``model`` the
    classifier (in eval mode; a model in train mode is warned about).

    Per chunk of ``images_per_chunk`` images:

    * ``z = E(x; f(x))`` for the predicted class ``y*`` (and the running-up class);
    * ``z_bar = E(x_bar; f(x_bar))`` for each attack image, explained for *its* predicted class
      (each distinct pool image of the chunk once);
    * ``I_k`` for every ``k`` (:func:`topk_masks`), the corrupted images of equation 5 for every
      (r, alpha, k) and, unless ``baseline is None``, the matching noise baselines
      (:func:`noise_baseline`; ``baseline`` holds its ``std``, ``mean``, ``positions``; the noise
      image of image ``i`` comes from a generator on x's device seeded by ``(seed, i)``, random
      positions are one permutation per image, shared by its attack images); all built lazily
      and explained in batches of ``batch_size``: ``z_hat = E(x_hat; f(x_hat))``
      (``explain_target="corrupted"``, as in equation 2) or ``E(x_hat; y*)`` (``"original"``);
    * the metrics: :func:`explanation_change` of ``z`` and ``z_hat``, :func:`ssim` of ``x`` and
      ``x_hat``, :func:`confidence_change` of class ``y*``.

    Returns a :class:`pandas.DataFrame`, one row per (image, rank, alpha, topk, method) in that
    order, with the columns :data:`GRID_COLUMNS`: ``image`` (position in ``x``),
    ``attack_index`` (pool index), ``rank`` (column of ``attack_idx``), ``method``
    (``"attack"``/``"baseline"``), the three metrics, ``pred_orig`` (``y*``), ``pred_corrupted``
    (argmax on ``x_hat``), ``runner_up`` (``y_r`` of ``x``), ``attack_pred`` (the attack image's
    predicted class, the class ``z_bar`` explains), ``attack_label`` (``pool_labels`` of the
    attack image, -1 without ``pool_labels``), ``n_injected`` (``|I_k|``, the elements equation 5
    blends) and ``n_changed`` (elements of ``x_hat`` that differ from ``x``; fewer where the
    blend equals ``x``, e.g. alpha = 0 or clipping).
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from xaisec.explainers import explain_batches

    if explain_target not in ("corrupted", "original"):
        raise ValueError("explain_target must be 'corrupted' or 'original'")
    if x.dim() != 4 or pool_x.dim() != 4 or x.shape[1:] != pool_x.shape[1:]:
        raise ValueError("x and pool_x must be (N, C, H, W) and (P, C, H, W) of the same image size")
    attack_idx = torch.as_tensor(attack_idx).long()
    if attack_idx.dim() != 2 or attack_idx.shape[0] != x.shape[0]:
        raise ValueError(f"attack_idx must have shape ({x.shape[0]}, R)")
    if attack_idx.numel() and ((attack_idx < 0) | (attack_idx >= pool_x.shape[0])).any():
        raise ValueError(f"attack_idx out of range [0, {pool_x.shape[0]})")
    if int(batch_size) < 1 or int(images_per_chunk) < 1:
        raise ValueError("batch_size and images_per_chunk must be positive")
    batch_size, images_per_chunk = int(batch_size), int(images_per_chunk)
    if baseline is not None:
        unknown = set(baseline) - {"std", "mean", "positions"}
        if unknown:
            raise ValueError(f"unknown baseline options {sorted(unknown)}; known: std, mean, positions")
        b_std = float(baseline.get("std", 1.0))
        b_mean = float(baseline.get("mean", 0.0))
        b_pos = baseline.get("positions", "attack")
        if b_pos not in ("attack", "random"):
            raise ValueError("baseline positions must be 'attack' or 'random'")
    if pool_labels is not None:
        pool_labels = torch.as_tensor(pool_labels).long().reshape(-1)
    if getattr(model, "training", False):
        import warnings

        warnings.warn("run_grid: the model is in train mode; use eval mode", stacklevel=2)

    dev = x.device
    alpha_list = [float(a) for a in alphas]
    topk_list = [float(k) for k in topks]
    a_t = _alphas(alpha_list, x)
    _check_topks(topk_list)
    n_img, n_r = attack_idx.shape
    n_a, n_k = len(alpha_list), len(topk_list)
    n_m = 1 if baseline is None else 2
    per_img = n_r * n_a * n_k * n_m
    cols: dict[str, list] = {c: [] for c in GRID_COLUMNS}

    bar = tqdm(total=n_img, desc=f"EXIAA {type(explainer).__name__}", disable=not progress,
               unit="img")
    for i0 in range(0, n_img, images_per_chunk):
        i1 = min(i0 + images_per_chunk, n_img)
        n = i1 - i0
        xc = x[i0:i1].detach()
        # original images: z = E(x; f(x))
        res = explain_batches(explainer, xc, batch_size=batch_size)
        z, logits = res.maps, res.logits
        pred, ru = running_up(logits)
        p_orig = logits.double().softmax(1)
        # attack images: z_bar = E(x_bar; f(x_bar)), each distinct pool image once
        idx = attack_idx[i0:i1].to(pool_x.device)
        uniq, inv = torch.unique(idx.reshape(-1), return_inverse=True)
        xu = pool_x[uniq].to(device=dev, dtype=x.dtype)
        res = explain_batches(explainer, xu, batch_size=batch_size)
        zu, lu = res.maps, res.logits
        inv = inv.to(dev)
        ranks_u, counts_u = _topk_ranks(zu, topk_list)  # (U, D), (U, K)
        attack_pred = lu.argmax(1)[inv]  # (n*R,)
        # baseline noise and random positions, per image
        if baseline is not None:
            eps, rrank = [], []
            for i in range(i0, i1):  # one small draw per image (independent of the chunking)
                g = _image_generator(seed, i, dev)
                eps.append(_noise(xc.shape[1:], b_mean, b_std, g, xc))
                if b_pos == "random":
                    rrank.append(_random_ranks(1, xc[0].numel(), g, dev)[0])
            eps = torch.stack(eps)
            rrank = torch.stack(rrank) if rrank else None

        g_total = n * per_img
        flat_x = xc.reshape(n, -1)
        out = {k: [] for k in ("ec", "ss", "cc", "pc", "nc")}
        for f0 in range(0, g_total, batch_size):
            f = torch.arange(f0, min(f0 + batch_size, g_total), device=dev)
            m = f % n_m
            k = (f // n_m) % n_k
            a = (f // (n_m * n_k)) % n_a
            r = (f // (n_m * n_k * n_a)) % n_r
            il = f // per_img
            row = inv[il * n_r + r]  # the distinct attack image
            cnt = counts_u[row, k].to(torch.int32)[:, None]
            rank = ranks_u[row]
            src = xu.reshape(xu.shape[0], -1)[row]
            if baseline is not None:
                is_b = (m == 1)[:, None]
                src = torch.where(is_b, eps.reshape(n, -1)[il], src)
                if rrank is not None:
                    rank = torch.where(is_b, rrank[il], rank)
            x0 = flat_x[il]
            xh = _blend(x0, src, rank < cnt, a_t[a][:, None])
            xh4 = xh.reshape(-1, *xc.shape[1:])
            target = pred[il] if explain_target == "original" else None
            res = explainer.attribute(xh4, target=target)
            zh, lh = res.maps, res.logits
            out["ec"].append(explanation_change(z[il], zh))
            out["ss"].append(ssim(xc[il], xh4))
            out["cc"].append(confidence_change(p_orig[il], lh.double().softmax(1)[:, None], pred[il])[:, 0])
            out["pc"].append(lh.argmax(1))
            out["nc"].append((xh != x0).sum(1))

        # grid indices of the chunk, in the same flat order
        f = np.arange(g_total)
        m = f % n_m
        k = (f // n_m) % n_k
        a = (f // (n_m * n_k)) % n_a
        r = (f // (n_m * n_k * n_a)) % n_r
        il = f // per_img
        idx_np = _np(attack_idx[i0:i1])
        inv_np = _np(inv).reshape(n, n_r)
        cols["image"].append(i0 + il)
        cols["attack_index"].append(idx_np[il, r])
        cols["rank"].append(r)
        cols["alpha"].append(np.asarray(alpha_list)[a])
        cols["topk"].append(np.asarray(topk_list)[k])
        cols["method"].append(np.where(m == 0, "attack", "baseline"))
        cols["explanation_change"].append(_np(torch.cat(out["ec"])))
        cols["ssim"].append(_np(torch.cat(out["ss"])))
        cols["confidence_change"].append(_np(torch.cat(out["cc"])))
        cols["pred_orig"].append(_np(pred)[il])
        cols["pred_corrupted"].append(_np(torch.cat(out["pc"])))
        cols["runner_up"].append(_np(ru)[il])
        cols["attack_pred"].append(_np(attack_pred).reshape(n, n_r)[il, r])
        if pool_labels is not None:
            cols["attack_label"].append(_np(pool_labels)[idx_np[il, r]])
        else:
            cols["attack_label"].append(np.full(g_total, -1))
        cols["n_injected"].append(_np(counts_u)[inv_np[il, r], k])
        cols["n_changed"].append(_np(torch.cat(out["nc"])))
        bar.update(n)
    bar.close()

    df = pd.DataFrame({c: (np.concatenate(v) if v else np.array([])) for c, v in cols.items()})
    for c in ("image", "attack_index", "rank", "pred_orig", "pred_corrupted", "runner_up",
              "attack_pred", "attack_label", "n_injected", "n_changed"):
        df[c] = df[c].astype(np.int64)
    for c in ("alpha", "topk", "explanation_change", "ssim", "confidence_change"):
        df[c] = df[c].astype(np.float64)
    df["method"] = df["method"].astype(str)
    return df
