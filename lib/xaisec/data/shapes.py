"""``shapes``: a synthetic shape-classification data set with object masks.

This is the project's embedded, offline default data set and its test data.
Every image holds exactly one object from one of :data:`CLASS_NAMES`.
The classes differ by shape alone: object colour, background, clutter,
position, scale and (where the class allows it) rotation are drawn
independently of the label.  The per-image object mask is the ground truth
for explanation-localisation metrics (IoU of a thresholded saliency map
against the mask).

Rendering is vectorised with numpy.  Each object is drawn as an implicit
inside/outside test on a supersampled coordinate grid (``SUPERSAMPLE`` x
``SUPERSAMPLE`` samples per pixel) for a batch of images of the same class;
the samples are area-averaged into per-pixel coverage, which is used as the
alpha for compositing, and ``coverage >= 0.5`` is the mask.

Backgrounds (drawn at pixel resolution) are one of

* ``gradient``  - linear or radial blend of two colours,
* ``uniform``   - a single colour with strong per-pixel noise,
* ``stripes``   - soft or hard stripes at a random angle and period,
* ``checker``   - a (possibly rotated) checkerboard with random cell size,
* ``lowfreq``   - smooth low-frequency colour noise,
* ``blobs``     - a base colour with several blurred colour blobs,

with optional thin line-segment clutter (never part of the mask) and mild
sensor noise.  The object colour is picked, among random candidates, to be
far from every background pixel it covers; objects that still have low
contrast (plus a random share of the rest) get a thin contrasting outline.

Public API
----------
``CLASS_NAMES``, ``NUM_CLASSES``, ``BACKGROUND_KINDS``,
``generate(n, seed, image_size=32) -> (images, labels, masks)`` and
``render_example_grid(path, n_per_class=4, seed=0)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "BACKGROUND_KINDS",
    "SUPERSAMPLE",
    "generate",
    "render_example_grid",
]

CLASS_NAMES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "diamond",
    "cross",
    "star",
    "ring",
    "crescent",
    "heart",
    "arrow",
)
NUM_CLASSES: int = len(CLASS_NAMES)

BACKGROUND_KINDS: tuple[str, ...] = (
    "gradient",
    "uniform",
    "stripes",
    "checker",
    "lowfreq",
    "blobs",
)

#: Supersampling factor per axis used to anti-alias objects and build masks.
SUPERSAMPLE: int = 4

# Object size: the shape's circumscribed circle has a diameter of
# SCALE_RANGE * image side * a per-class factor (every shape below fits the
# unit disk); overall about 40% to 89% of the side.
SCALE_RANGE = (0.46, 0.76)
# Per-class size factors (unit-disk area A_c of each shape, factor
# (A_ref / A_c) ** 0.25): half-way, in log terms, between equal extent and
# equal area, so that object area is only a weak cue to the class.
_SIZE_FACTOR = {
    "circle": 0.86,
    "square": 0.96,
    "triangle": 1.05,
    "diamond": 1.10,
    "cross": 0.96,
    "star": 1.04,
    "ring": 0.95,
    "crescent": 1.02,
    "heart": 0.98,
    "arrow": 1.17,
}
# Largest |rotation| in degrees per class; 180 means any rotation.
# Square/diamond/cross/heart stay near upright (a square turned by 45 degrees
# would be a diamond; an upside-down heart looks like a blunt triangle).
_MAX_ROTATION_DEG = {
    "circle": 180.0,
    "square": 15.0,
    "triangle": 25.0,
    "diamond": 15.0,
    "cross": 20.0,
    "star": 180.0,
    "ring": 180.0,
    "crescent": 180.0,
    "heart": 25.0,
    "arrow": 180.0,
}
# Minimal RGB distance (in [0, 1] units) between the object colour and the
# background under it below which the object gets an outline.
_MIN_CONTRAST = 0.35
_OUTLINE_PROB = 0.15
_N_COLOUR_CANDIDATES = 16
_CHUNK = 256  # images rendered at once per class (bounds memory use)

_F32 = np.float32


# --------------------------------------------------------------------------
# Shape inside-tests.  Each takes unit-frame coordinates u (right), v (up)
# of shape (b, h, w), and per-image jitter ``j`` in [0, 1) of shape (b, 1, 1)
# and returns a boolean "inside" array.  All shapes fit in the unit disk.
# --------------------------------------------------------------------------

def _lerp(a: float, b: float, t: np.ndarray) -> np.ndarray:
    return (a + (b - a) * t).astype(_F32)


def _circle(u, v, j):
    return u * u + v * v <= _F32(0.96**2)


def _square(u, v, j):
    h = _lerp(0.66, 0.70, j)
    return (np.abs(u) <= h) & (np.abs(v) <= h)


def _triangle(u, v, j):
    # Equilateral, circumradius 1, centred on its centroid, a vertex up.
    c, s = _F32(np.cos(np.pi / 6)), _F32(0.5)
    return (v >= -0.5) & (c * u + s * v <= 0.5) & (-c * u + s * v <= 0.5)


def _diamond(u, v, j):
    # Tall rhombus: half-width 0.5-0.58, half-height 1 (never a square).
    a = _lerp(0.50, 0.58, j)
    return np.abs(u) / a + np.abs(v) <= 1.0


def _cross(u, v, j):
    w = _lerp(0.26, 0.34, j)
    au, av = np.abs(u), np.abs(v)
    return ((au <= w) & (av <= 0.92)) | ((av <= w) & (au <= 0.92))


_STAR_SECTOR = _F32(2 * np.pi / 5)


def _star(u, v, j):
    # Five-pointed star, outer radius 1, inner radius rho.  Fold the angle
    # into one spike's half-sector and test against the spike edge.
    rho = _lerp(0.42, 0.50, j)
    r = np.sqrt(u * u + v * v)
    th = np.arctan2(u, v)  # 0 = up
    phi = np.abs(np.mod(th + _STAR_SECTOR / 2, _STAR_SECTOR) - _STAR_SECTOR / 2)
    x, y = r * np.cos(phi), r * np.sin(phi)
    # Edge from the tip (1, 0) to the inner vertex (rho cos36, rho sin36).
    half = _F32(np.pi / 5)
    ix, iy = rho * _F32(np.cos(half)), rho * _F32(np.sin(half))
    # inside iff (P - tip) x (inner - tip) has the same sign as the origin.
    cross_p = (x - 1.0) * iy - y * (ix - 1.0)
    cross_o = -1.0 * iy
    return cross_p * cross_o >= 0


def _ring(u, v, j):
    rin = _lerp(0.52, 0.60, j)
    r2 = u * u + v * v
    return (r2 <= _F32(0.96**2)) & (r2 >= rin * rin)


def _crescent(u, v, j):
    d = _lerp(0.42, 0.52, j)
    outer = u * u + v * v <= 1.0
    bite = (u - d) ** 2 + v * v <= _F32(0.80**2)
    return outer & ~bite


_HEART_K = _F32(np.tan(np.radians(38.4)))  # slope of the lower V


def _heart(u, v, j):
    # Two round lobes centred at (+-0.42, 0.32), radius 0.46, over a V with
    # its tip at (0, -0.95) tangent to the lobes: a deep notch at the top and
    # a sharp point at the bottom keep it apart from a circle when small.
    hs = _lerp(1.05, 1.09, j)
    x = np.abs(u * hs)
    y = v * hs - _F32(0.085)  # bounding-box centre -> origin
    lobes = (x - _F32(0.42)) ** 2 + (y - _F32(0.32)) ** 2 <= _F32(0.46**2)
    vee = (x <= _HEART_K * (y + _F32(0.95))) & (
        (y <= _F32(0.034)) | ((y <= _F32(0.32)) & (x <= _F32(0.42)))
    )
    return lobes | vee


def _arrow(u, v, j):
    sw = _lerp(0.15, 0.20, j)  # shaft half-width
    base, tip, hw = _F32(0.12), _F32(0.96), _F32(0.56)
    shaft = (np.abs(v) <= sw) & (u >= -0.96) & (u <= base + 0.01)
    head = (u >= base) & (np.abs(v) * (tip - base) <= hw * (tip - u))
    return shaft | head


_SHAPES: dict[str, Callable] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "diamond": _diamond,
    "cross": _cross,
    "star": _star,
    "ring": _ring,
    "crescent": _crescent,
    "heart": _heart,
    "arrow": _arrow,
}
assert tuple(_SHAPES) == CLASS_NAMES


def _render_coverage(
    name: str,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: np.ndarray,
    angle: np.ndarray,
    aspect: np.ndarray,
    jitter: np.ndarray,
    size: int,
    ss: int,
) -> np.ndarray:
    """Per-pixel coverage in [0, 1] of one class's shapes, (b, size, size)."""
    b = cx.shape[0]
    t = (np.arange(size * ss, dtype=_F32) + _F32(0.5)) / _F32(ss)  # pixel coords
    dx = t[None, :] - cx[:, None].astype(_F32)  # (b, W)
    dy = t[None, :] - cy[:, None].astype(_F32)  # (b, H)
    c = (np.cos(angle) / radius).astype(_F32)[:, None]
    s = (np.sin(angle) / radius).astype(_F32)[:, None]
    # Image y grows downwards; the unit frame has v upwards.  Rotate by -angle.
    asp = aspect.astype(_F32)[:, None]
    u = ((c * dx)[:, None, :] - (s * dy)[:, :, None]) * asp[:, :, None]
    v = ((-s * dx)[:, None, :] - (c * dy)[:, :, None]) / asp[:, :, None]
    inside = _SHAPES[name](u, v, jitter.astype(_F32).reshape(b, 1, 1))
    cov = inside.reshape(b, size, ss, size, ss).sum(axis=(2, 4), dtype=np.int32)
    return cov.astype(_F32) / _F32(ss * ss)


# --------------------------------------------------------------------------
# Backgrounds (pixel resolution, float32 in [0, 1], shape (m, S, S, 3)).
# --------------------------------------------------------------------------

def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(size, dtype=_F32) + _F32(0.5)
    return t[None, None, :], t[None, :, None]  # x (1,1,W), y (1,H,1)


def _blend(c1: np.ndarray, c2: np.ndarray, t: np.ndarray) -> np.ndarray:
    """c1 + (c2 - c1) * t with colours (m, 3) and weights (m, H, W)."""
    return c1[:, None, None, :] + (c2 - c1)[:, None, None, :] * t[..., None]


def _bg_gradient(rng, m, size):
    x, y = _grid(size)
    c1, c2 = rng.random((m, 3), dtype=_F32), rng.random((m, 3), dtype=_F32)
    th = rng.uniform(0, 2 * np.pi, m).astype(_F32)[:, None, None]
    lin = ((x - size / 2) * np.cos(th) + (y - size / 2) * np.sin(th)) / (size * 0.71)
    lin = 0.5 + 0.5 * lin
    ctr = rng.uniform(0, size, (2, m)).astype(_F32)[:, :, None, None]
    rad = np.sqrt((x - ctr[0]) ** 2 + (y - ctr[1]) ** 2) / _F32(size * 1.1)
    radial = rng.random(m) < 0.35
    t = np.where(radial[:, None, None], rad, lin)
    return _blend(c1, c2, np.clip(t, 0, 1))


def _bg_uniform(rng, m, size):
    c = rng.random((m, 3), dtype=_F32)
    return np.broadcast_to(c[:, None, None, :], (m, size, size, 3)).copy()


def _bg_stripes(rng, m, size):
    x, y = _grid(size)
    c1, c2 = rng.random((m, 3), dtype=_F32), rng.random((m, 3), dtype=_F32)
    th = rng.uniform(0, np.pi, m).astype(_F32)[:, None, None]
    period = (rng.uniform(3.0, 12.0, m) * size / 32).astype(_F32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, m).astype(_F32)[:, None, None]
    hard = rng.uniform(0.6, 4.0, m).astype(_F32)[:, None, None]
    w = (x * np.cos(th) + y * np.sin(th)) * (2 * np.pi / period) + phase
    return _blend(c1, c2, np.clip(0.5 + hard * 0.5 * np.sin(w), 0, 1))


def _bg_checker(rng, m, size):
    x, y = _grid(size)
    c1, c2 = rng.random((m, 3), dtype=_F32), rng.random((m, 3), dtype=_F32)
    th = np.where(rng.random(m) < 0.5, 0.0, rng.uniform(0, np.pi / 2, m))
    th = th.astype(_F32)[:, None, None]
    cell = (rng.uniform(2.5, 6.0, m) * size / 32).astype(_F32)[:, None, None]
    off = rng.uniform(0, 2 * np.pi, (2, m)).astype(_F32)[:, :, None, None]
    k = _F32(np.pi) / cell
    a = (x * np.cos(th) + y * np.sin(th)) * k + off[0]
    b = (-x * np.sin(th) + y * np.cos(th)) * k + off[1]
    return _blend(c1, c2, np.clip(0.5 + 3.0 * np.sin(a) * np.sin(b), 0, 1))


def _smooth_weights(size: int, g: int) -> np.ndarray:
    """(size, g) smoothstep interpolation weights from g nodes over the image."""
    pos = (np.arange(size) + 0.5) / size * (g - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, g - 2)
    f = pos - i0
    f = f * f * (3 - 2 * f)
    w = np.zeros((size, g), dtype=_F32)
    w[np.arange(size), i0] = 1 - f
    w[np.arange(size), i0 + 1] = f
    return w


def _bg_lowfreq(rng, m, size):
    out = np.empty((m, size, size, 3), dtype=_F32)
    gs = rng.integers(2, 6, m)  # nodes per axis
    for g in np.unique(gs):
        idx = np.flatnonzero(gs == g)
        nodes = rng.random((idx.size, g, g, 3), dtype=_F32)
        wmat = _smooth_weights(size, int(g))
        out[idx] = np.einsum("ia,mabc,jb->mijc", wmat, nodes, wmat, optimize=True)
    return out


def _bg_blobs(rng, m, size, n_blobs=5):
    x, y = _grid(size)
    img = _bg_uniform(rng, m, size)
    for _ in range(n_blobs):
        col = rng.random((m, 3), dtype=_F32)
        ctr = rng.uniform(-0.1 * size, 1.1 * size, (2, m)).astype(_F32)[:, :, None, None]
        sig = (rng.uniform(0.08, 0.25, m) * size).astype(_F32)[:, None, None]
        on = (rng.random(m) < 0.8).astype(_F32)[:, None, None]
        a = on * np.exp(-((x - ctr[0]) ** 2 + (y - ctr[1]) ** 2) / (2 * sig * sig))
        img += (col[:, None, None, :] - img) * a[..., None]
    return img


_BACKGROUNDS = {
    "gradient": _bg_gradient,
    "uniform": _bg_uniform,
    "stripes": _bg_stripes,
    "checker": _bg_checker,
    "lowfreq": _bg_lowfreq,
    "blobs": _bg_blobs,
}
assert tuple(_BACKGROUNDS) == BACKGROUND_KINDS


def _clutter(rng, img: np.ndarray, max_lines: int = 3) -> None:
    """Draw 0..max_lines thin anti-aliased line segments in place."""
    m, size = img.shape[0], img.shape[1]
    x, y = _grid(size)
    count = rng.choice(max_lines + 1, size=m, p=[0.4, 0.3, 0.2, 0.1][: max_lines + 1])
    for k in range(max_lines):
        on = count > k
        p0 = rng.uniform(0, size, (2, m)).astype(_F32)
        ang = rng.uniform(0, 2 * np.pi, m)
        length = rng.uniform(0.12, 0.35, m) * size
        d = np.stack([np.cos(ang) * length, np.sin(ang) * length]).astype(_F32)
        half_w = (rng.uniform(0.35, 0.7, m) * max(size / 32, 1.0)).astype(_F32)
        col = rng.random((m, 3), dtype=_F32)
        if not on.any():
            continue
        px = x - p0[0][:, None, None]
        py = y - p0[1][:, None, None]
        dxx, dyy = d[0][:, None, None], d[1][:, None, None]
        t = np.clip((px * dxx + py * dyy) / (dxx * dxx + dyy * dyy), 0, 1)
        dist = np.sqrt((px - t * dxx) ** 2 + (py - t * dyy) ** 2)
        a = np.clip(half_w[:, None, None] + 0.5 - dist, 0, 1) * on[:, None, None]
        img += (col[:, None, None, :] - img) * a[..., None]


def _dilate(a: np.ndarray) -> np.ndarray:
    """3x3 grey-level dilation of (m, H, W)."""
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    h = np.maximum(np.maximum(p[:, :, :-2], p[:, :, 1:-1]), p[:, :, 2:])
    return np.maximum(np.maximum(h[:, :-2], h[:, 1:-1]), h[:, 2:])


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------

def generate(
    n: int, seed: int, image_size: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``n`` labelled images with object masks.

    Returns ``(images, labels, masks)``: uint8 ``(n, H, W, 3)``, int64
    ``(n,)`` (balanced: ``arange(n) % NUM_CLASSES`` shuffled) and uint8
    ``(n, H, W)`` with 1 on object pixels.  The output is a deterministic
    function of ``(n, seed, image_size)``.
    """
    n = int(n)
    size = int(image_size)
    if n < 0:
        raise ValueError("n must be >= 0")
    if size < 8:
        raise ValueError("image_size must be >= 8")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5A9E5]))
    labels = rng.permutation(np.arange(n, dtype=np.int64) % NUM_CLASSES)

    # ---- object geometry ----
    size_factor = np.array([_SIZE_FACTOR[c] for c in CLASS_NAMES])
    scale = rng.uniform(*SCALE_RANGE, n) * size_factor[labels]
    radius = np.minimum(scale * size / 2, size / 2 - 1.0)
    margin = radius + 1.0  # keep one clear pixel at the border
    cx = margin + rng.random(n) * (size - 2 * margin)
    cy = margin + rng.random(n) * (size - 2 * margin)
    max_rot = np.radians(np.array([_MAX_ROTATION_DEG[c] for c in CLASS_NAMES]))
    angle = rng.uniform(-1.0, 1.0, n) * max_rot[labels]
    aspect = np.exp(rng.uniform(-0.08, 0.08, n))
    # Keep the anisotropically scaled shape inside the unit disk * radius.
    radius = radius / np.maximum(aspect, 1 / aspect)
    jitter = rng.random(n)

    # ---- object coverage (supersampled, batched per class) ----
    cov = np.empty((n, size, size), dtype=_F32)
    for k, name in enumerate(CLASS_NAMES):
        idx = np.flatnonzero(labels == k)
        for s in range(0, idx.size, _CHUNK):
            i = idx[s : s + _CHUNK]
            cov[i] = _render_coverage(
                name, cx[i], cy[i], radius[i], angle[i], aspect[i], jitter[i],
                size, SUPERSAMPLE,
            )
    masks = (cov >= 0.5).astype(np.uint8)

    # ---- backgrounds ----
    kinds = rng.integers(0, len(BACKGROUND_KINDS), n)
    bg = np.empty((n, size, size, 3), dtype=_F32)
    for k, kind in enumerate(BACKGROUND_KINDS):
        idx = np.flatnonzero(kinds == k)
        if idx.size:
            bg[idx] = _BACKGROUNDS[kind](rng, idx.size, size)

    # ---- object colour: the candidate farthest from the background it covers
    cand = rng.random((n, _N_COLOUR_CANDIDATES, 3), dtype=_F32)
    colour = np.empty((n, 3), dtype=_F32)
    contrast = np.empty(n, dtype=_F32)
    for s in range(0, n, 1024):
        sl = slice(s, s + 1024)
        px = bg[sl].reshape(-1, size * size, 3)  # (b, P, 3)
        c = cand[sl]  # (b, K, 3)
        d2 = (
            (c * c).sum(-1)[:, :, None]
            - 2 * np.matmul(c, px.transpose(0, 2, 1))
            + (px * px).sum(-1)[:, None, :]
        )
        covered = (cov[sl].reshape(-1, 1, size * size) > 0.0)
        mind = np.sqrt(np.maximum(np.where(covered, d2, np.inf).min(-1), 0))
        best = mind.argmax(-1)
        colour[sl] = np.take_along_axis(c, best[:, None, None], 1)[:, 0]
        contrast[sl] = mind[np.arange(best.size), best]

    # ---- clutter, outline, object texture, compositing, noise ----
    img = bg
    _clutter(rng, img)
    outline = (contrast < _MIN_CONTRAST) | (rng.random(n) < _OUTLINE_PROB)
    lum = colour @ np.array([0.299, 0.587, 0.114], dtype=_F32)
    line_col = np.where(lum[:, None] > 0.5, _F32(0.0), _F32(1.0)).astype(_F32)
    line_col = np.broadcast_to(line_col, (n, 3))
    ring_a = (_dilate(cov) * outline[:, None, None]).astype(_F32)
    img += (line_col[:, None, None, :] - img) * ring_a[..., None]

    x, y = _grid(size)
    th = rng.uniform(0, 2 * np.pi, n).astype(_F32)[:, None, None]
    amp = rng.uniform(0.0, 0.15, n).astype(_F32)[:, None, None]
    shade = amp * ((x - cx[:, None, None]) * np.cos(th) + (y - cy[:, None, None]) * np.sin(th))
    shade = shade / _F32(size * 0.35)
    tex_sigma = rng.uniform(0.0, 0.04, n).astype(_F32)[:, None, None, None]
    obj = colour[:, None, None, :] + shade[..., None]
    obj = obj + tex_sigma * rng.standard_normal((n, size, size, 3), dtype=_F32)
    img += (obj - img) * cov[..., None]

    noise_sigma = np.where(kinds == BACKGROUND_KINDS.index("uniform"),
                           rng.uniform(0.03, 0.08, n), rng.uniform(0.0, 0.025, n))
    noise_sigma = noise_sigma.astype(_F32)[:, None, None, None]
    img += noise_sigma * rng.standard_normal((n, size, size, 3), dtype=_F32)
    images = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return images, labels, masks


def render_example_grid(
    path: str | Path, n_per_class: int = 4, seed: int = 0, image_size: int = 32
) -> Path:
    """Save a PNG with ``n_per_class`` samples per class (one row per class),
    each object mask outlined, and return the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, labels, masks = generate(n_per_class * NUM_CLASSES, seed, image_size)
    ncol = 2 * n_per_class
    fig, axes = plt.subplots(
        NUM_CLASSES, ncol, figsize=(1.2 * ncol, 1.25 * NUM_CLASSES), squeeze=False
    )
    for k, name in enumerate(CLASS_NAMES):
        idx = np.flatnonzero(labels == k)[:n_per_class]
        for j in range(n_per_class):
            a_img, a_msk = axes[k, 2 * j], axes[k, 2 * j + 1]
            for a in (a_img, a_msk):
                a.set_xticks([])
                a.set_yticks([])
            if j >= idx.size:
                a_img.axis("off")
                a_msk.axis("off")
                continue
            i = idx[j]
            a_img.imshow(images[i], interpolation="nearest")
            a_msk.imshow(images[i], interpolation="nearest")
            a_msk.contour(masks[i], levels=[0.5], colors=["black"], linewidths=2.4)
            a_msk.contour(masks[i], levels=[0.5], colors=["yellow"], linewidths=1.0)
        axes[k, 0].set_ylabel(name, fontsize=9)
    fig.suptitle(f"shapes (seed={seed}): image | mask outline", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
