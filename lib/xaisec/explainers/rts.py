"""RTS, the real-time saliency interpreter (Dabkowski & Gal 2017): a masking model trained
once, then one forward pass per explanation.

The AdvEdge paper's model-guided interpreter (AdvEdge paper, Section IV-E, eq. 11;
papers/advedge.txt; settings: docs/settings.md#advedge, rows "RTS saliency model" and "RTS
attack")::

    saliency = SaliencyModel(encoder, num_classes)           # frozen encoder + new decoder
    history = train_rts(saliency, images, labels, phases=DEFAULT_PHASES, device="cuda")
    save_rts("rts.pt", saliency, meta={...})
    saliency = load_rts("rts.pt", encoder)                   # checked against the encoder
    res = RTS(model, saliency).attribute(x, target=None)     # res.maps (N, 1, H, W) in [0, 1]
    res.extra["encoder_logits"]                              # for the attack's encoder term

The saliency model is a pretrained classifier used as a frozen encoder (its features are read
by forward hooks at ``encoder_layers``) plus a U-Net-like decoder with a class selector; only
the decoder and the selector are trained and saved. There is deliberately no way to explain
with an untrained decoder: the authors' attack code never restores its trained decoder (a
known defect, docs/settings.md#advedge, "defects of the authors' code"), which this module
does not reproduce.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaisec.explainers.base import Explainer, Explanation, resolve_target
from xaisec.explainers.hooks import capture, get_module, recorded

__all__ = ["DEFAULT_PHASES", "FORMAT_VERSION", "RTS", "SaliencyModel", "alternative_images",
           "auto_encoder_layers", "encoder_fingerprint", "load_rts", "rts_objective",
           "save_rts", "train_rts"]

#: version of the checkpoint layout written by :func:`save_rts`
FORMAT_VERSION = 1
_FORMAT = "xaisec.rts"

#: The two training phases of the authors' RTS (docs/settings.md#advedge, "RTS saliency
#: model"; REFERENCE: phase 1 Adam 1e-3, weight decay 1e-4, 8,500 iterations, batch 128,
#: fake-label probability 0.5; phase 2 3,000 iterations, batch 64, fake-label probability
#: 0.3, smoothness 0.005). What each phase optimises follows Dabkowski & Gal's published
#: training script, from which the authors' settings come: phase 1 trains the class selector
#: alone on the "does the class exist" loss, with the learning rate divided by 10 every 4,000
#: iterations; phase 2 trains the decoder (the selector fixed) on the objective of eq. 11.
DEFAULT_PHASES: tuple[dict, ...] = (
    {"iterations": 8500, "batch_size": 128, "fake_prob": 0.5, "objective": "exists",
     "trainable": "selector", "lr_decay_every": 4000},
    {"iterations": 3000, "batch_size": 64, "fake_prob": 0.3, "smoothness": 0.005,
     "objective": "saliency", "trainable": "decoder"},
)

#: Defaults of the objective's coefficients (keyword arguments of :func:`rts_objective`, and
#: the keys a phase may override). REFERENCE.md gives only the phase-2 smoothness (0.005, set
#: per phase); the others are Dabkowski & Gal's published defaults unless marked otherwise.
OBJECTIVE_DEFAULTS = {
    "smoothness": 0.5,        # lambda1, TV coefficient: D-G published default (0.5)
    "tv_border": 0.3,         # TV border penalty: D-G published implementation (0.3)
    "area": 8.0,              # lambda2: D-G published default (8)
    "area_power": 0.3,        # power on the mask elements in the area term: D-G (0.3)
    "preserver": 1.0,         # weight of -log f_c(Phi(x; m)): 1 as in eq. 11 (D-G's code
                              # weights its hinge-form preserver term 0.3)
    "destroyer": 1.0,         # lambda3: D-G published implementation (weight 1)
    "destroyer_power": 0.3,   # lambda4: D-G only require < 1; this project's choice (0.3)
    "blur_prob": 0.5,         # share of blurred alternatives: D-G published default (0.5)
    "colour_prob": 0.25,      # share of constant-colour alternatives: this project (the rest
                              # are noise); D-G use colour plus noise for the other half
    "blur_sigma": 11 / 224,   # blur sigma as a fraction of the side: D-G (sigma 11 at 224)
    "noise_std": 0.055,       # noise of the noise alternative: D-G (0.11 on a [-1, 1] scale)
    "image_noise_std": 0.015,  # noise added to x before masking: D-G (0.03 on [-1, 1])
}
_PHASE_KEYS = {"iterations", "batch_size", "fake_prob", "objective", "trainable", "lr",
               "lr_decay_every"} | set(OBJECTIVE_DEFAULTS)
_OBJECTIVES = ("saliency", "exists")
_TRAINABLE = ("all", "decoder", "selector")


# ---------------------------------------------------------------- encoder layers

def _input_hw(encoder: nn.Module, input_size) -> tuple[int, int]:
    """The encoder's input size (H, W): ``input_size`` (int or pair), else the encoder's own
    ``input_size`` attribute (ImageNet models), else 32 for the project's CIFAR
    architectures (``encoder.spec.arch``)."""
    if input_size is None:
        input_size = getattr(encoder, "input_size", None)
    if input_size is None:
        from xaisec.catalog import CIFAR_ARCHS

        spec = getattr(encoder, "spec", None)
        if getattr(spec, "arch", None) in CIFAR_ARCHS:
            input_size = 32
    if input_size is None:
        raise ValueError(f"cannot tell the input size of {type(encoder).__name__}; pass "
                         "input_size")
    if isinstance(input_size, int):
        return int(input_size), int(input_size)
    h, w = (int(v) for v in input_size)
    return h, w


def _param_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def _probe(encoder: nn.Module, hw: tuple[int, int], names: Sequence[str] | None = None):
    """One forward pass of a constant image of size ``hw`` (batch of 2) with every module in
    eval mode (restored afterwards, so BatchNorm statistics stay untouched) and no gradients.
    Returns the completion order of the 4-D outputs [(name, shape)], keyed by the last call
    of each module, and the logits."""
    device, dtype = _param_device_dtype(encoder)
    x = torch.full((2, 3, *hw), 0.5, device=device, dtype=dtype)
    modes = {m: m.training for m in encoder.modules()}
    order: dict[str, tuple[int, tuple]] = {}
    counter = [0]
    handles = []

    def hook(name):
        def fn(module, args, output):
            counter[0] += 1
            if isinstance(output, Tensor) and output.dim() == 4:
                order[name] = (counter[0], tuple(output.shape))
        return fn

    targets = names if names is not None else [n for n, _ in encoder.named_modules() if n]
    try:
        for n in targets:
            handles.append(get_module(encoder, n).register_forward_hook(hook(n)))
        encoder.eval()
        with torch.no_grad():
            logits = encoder(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    seq = sorted(order.items(), key=lambda kv: kv[1][0])
    return [(n, shape) for n, (_, shape) in seq], logits


def auto_encoder_layers(encoder: nn.Module, input_size=None, max_levels: int = 4) -> list[str]:
    """The encoder layers the decoder reads, found by one probe forward pass: for each spatial
    resolution of the 4-D module outputs that is at most the input's and larger than 1x1 (the
    global pool), among the outermost modules with an output at that resolution (fewest
    dotted name parts: ``layer1`` rather than ``layer1.2.act2`` or ``layer2.0.bn1``, which
    still runs at layer 1's resolution inside a downsampling block) the last to complete; the
    ``max_levels`` smallest resolutions are kept (Dabkowski & Gal's ResNet-50 encoder feeds
    four scales, 56 to 7 px at 224, to the decoder), listed from the largest resolution to
    the smallest.

    ResNet-20 at 32 px: ``layer1``, ``layer2``, ``layer3`` (32, 16, 8 px); a torchvision
    ResNet at 224 px: ``layer1`` to ``layer4`` (its stem's 112 px ReLU is the fifth level)."""
    h, w = _input_hw(encoder, input_size)
    seq, _ = _probe(encoder, (h, w))
    last: dict[tuple[int, int], tuple[int, str]] = {}  # resolution -> (depth, name)
    for name, shape in seq:  # in completion order
        rh, rw = shape[-2:]
        depth = name.count(".")
        if rh <= h and rw <= w and rh * rw > 1 and depth <= last.get((rh, rw), (depth, ""))[0]:
            last[(rh, rw)] = (depth, name)  # as outer, and later: replaces
    if not last:
        raise ValueError(f"{type(encoder).__name__} has no 4-D feature maps below its input "
                         "size; pass encoder_layers")
    res = sorted(last, key=lambda r: r[0] * r[1], reverse=True)[-max_levels:]
    return [last[r][1] for r in res]


def encoder_fingerprint(encoder: nn.Module) -> str:
    """sha256 of the encoder's parameters and buffers (names, shapes, float32 values;
    ``num_batches_tracked`` left out): tells a checkpoint's encoder from another one."""
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        if name.endswith("num_batches_tracked") or not isinstance(t, Tensor):
            continue
        v = t.detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}|{tuple(v.shape)}|".encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- the saliency model

class _Block(nn.Module):
    """Residual block: two 3x3 convolutions with a ReLU between, plus a 1x1 projection."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.skip(x) + self.conv2(F.relu(self.conv1(x)))


class SaliencyModel(nn.Module):
    """Frozen encoder + U-Net-like masking decoder with a class selector (Dabkowski & Gal
    2017; AdvEdge paper, Section IV-E, papers/advedge.txt).

    ``encoder``: a classifier taking [0, 1] images (never trained here). It is kept outside
    the module tree: not in :meth:`parameters`, :meth:`state_dict`, ``.to()`` nor
    ``.train()`` (move and set the mode of the encoder yourself; it is used as it is). The
    decoder starts on the encoder's device; ``.to()`` moves the decoder only.
    ``encoder_layers``: module names whose outputs feed the decoder, from the largest
    resolution to the smallest; ``None``: :func:`auto_encoder_layers`. ``width``: decoder
    channels at the largest resolution, doubled per level below (default 64, Dabkowski &
    Gal's decoder base width). ``input_size``: the encoder's input size for the probe (None:
    the encoder's ``input_size`` attribute, or 32 for the CIFAR architectures).

    Selector (as Dabkowski & Gal): the embedding ``e_c`` (C = the deepest layer's channels)
    is multiplied channel-wise into the deepest features ``F`` and summed over channels to a
    class-evidence map ``a = sum_k e_{c,k} F_k``; the bottleneck is ``F * sigmoid(a)`` and the
    "class exists" logit is the spatial mean of ``a``. Decoder: per level, upsample
    (bilinear), concatenate with the level's 1x1-projected features, a residual conv block;
    then two channels ``(p, q)`` and the mask ``|p| / (|p| + |q|)`` (Dabkowski & Gal's
    activation), bilinearly resized to the input and clamped to [0, 1].

    ``forward(x, labels) -> (mask (N, 1, H, W), encoder_logits (N, classes))``; ``trained``
    is False until :func:`train_rts` or :func:`load_rts` sets it.
    """

    def __init__(self, encoder: nn.Module, num_classes: int,
                 encoder_layers: list[str] | None = None, width: int = 64,
                 input_size: int | tuple[int, int] | None = None):
        super().__init__()
        if int(num_classes) < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if int(width) < 1:
            raise ValueError(f"width must be a positive int, got {width}")
        self.__dict__["encoder"] = encoder  # outside the module tree (not saved, not trained)
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.input_size = _input_hw(encoder, input_size)
        if encoder_layers is None:
            encoder_layers = auto_encoder_layers(encoder, self.input_size)
        encoder_layers = [str(n) for n in encoder_layers]
        if not encoder_layers:
            raise ValueError("encoder_layers is empty")
        seq, logits = _probe(encoder, self.input_size, encoder_layers)
        shapes = dict(seq)
        missing = [n for n in encoder_layers if n not in shapes]
        if missing:
            raise ValueError(f"encoder layers {missing} give no 4-D output in "
                             f"{type(encoder).__name__}'s forward pass")
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"the encoder gives logits of shape {tuple(logits.shape)}, not "
                             f"(N, {self.num_classes})")
        sizes = [shapes[n][-2:] for n in encoder_layers]
        if any(a[0] < b[0] or a[1] < b[1] for a, b in zip(sizes, sizes[1:])):
            raise ValueError(f"encoder_layers must go from the largest resolution to the "
                             f"smallest; got sizes {sizes} for {encoder_layers}")
        self.encoder_layers = encoder_layers
        self.layer_channels = [int(shapes[n][1]) for n in encoder_layers]
        self.layer_sizes = [[int(s) for s in shapes[n][-2:]] for n in encoder_layers]
        self.trained = False
        self.meta: dict = {}

        widths = [self.width * 2 ** i for i in range(len(encoder_layers))]
        deep = self.layer_channels[-1]
        self.selector = nn.Embedding(self.num_classes, deep)
        nn.init.normal_(self.selector.weight, 0.0, 1.0 / math.sqrt(deep))  # as D-G
        self.bottleneck = nn.Conv2d(deep, widths[-1], 1)
        self.lateral = nn.ModuleList(nn.Conv2d(c, w, 1) for c, w in
                                     zip(self.layer_channels[:-1], widths[:-1]))
        self.blocks = nn.ModuleList(_Block(widths[i + 1] + widths[i], widths[i])
                                    for i in range(len(widths) - 1))
        self.head = nn.Conv2d(widths[0], 2, 1)
        self.to(_param_device_dtype(encoder)[0])  # start on the encoder's device

    @property
    def decoder_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter except the selector's."""
        sel = {id(p) for p in self.selector.parameters()}
        return [p for p in self.parameters() if id(p) not in sel]

    def encode(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """The encoder's features at ``encoder_layers`` and its logits, one forward pass."""
        with capture(self.encoder, outputs=tuple(self.encoder_layers)) as (outs, _):
            logits = self.encoder(x)
        return [recorded(outs, n) for n in self.encoder_layers], logits

    def decode(self, feats: Sequence[Tensor], labels: Tensor,
               size: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
        """(mask (N, 1, *size) in [0, 1], class-exists logit (N,)) for classes ``labels``
        from the encoder features (``size``: the mask's size, default the first level's)."""
        weight = self.head.weight
        if feats[-1].device != weight.device:
            raise ValueError(f"the encoder features are on {feats[-1].device}, the saliency "
                             f"model on {weight.device}; move it with .to()")
        feats = [f.to(weight.dtype) for f in feats]
        labels = torch.as_tensor(labels, device=weight.device).long().reshape(-1)
        deep = feats[-1]
        if labels.shape[0] != deep.shape[0]:
            raise ValueError(f"labels must have shape ({deep.shape[0]},), got "
                             f"{tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels out of range [0, {self.num_classes})")
        emb = self.selector(labels).to(deep.dtype)
        evidence = (deep * emb[:, :, None, None]).sum(1, keepdim=True)
        exists = evidence.mean(dim=(1, 2, 3))
        h = F.relu(self.bottleneck(deep * torch.sigmoid(evidence)))
        for i in reversed(range(len(self.blocks))):
            skip = F.relu(self.lateral[i](feats[i]))
            h = F.interpolate(h, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            h = self.blocks[i](torch.cat([h, skip], 1))
        pq = self.head(h).abs()
        mask = pq[:, :1] / (pq[:, :1] + pq[:, 1:] + 1e-8)
        if size is not None and tuple(mask.shape[-2:]) != tuple(size):
            mask = F.interpolate(mask, size=tuple(size), mode="bilinear", align_corners=False)
        return mask.clamp(0, 1), exists

    def forward(self, x: Tensor, labels) -> tuple[Tensor, Tensor]:
        """``(mask (N, 1, H, W) in [0, 1] for classes labels, encoder logits (N, classes))``;
        differentiable with respect to ``x`` (nothing is detached)."""
        feats, logits = self.encode(x)
        mask, _ = self.decode(feats, labels, x.shape[-2:])
        return mask, logits

    def config(self) -> dict:
        """What a checkpoint needs to rebuild this model around an encoder."""
        return {"num_classes": self.num_classes, "encoder_layers": list(self.encoder_layers),
                "layer_channels": list(self.layer_channels),
                "layer_sizes": [list(s) for s in self.layer_sizes], "width": self.width,
                "input_size": list(self.input_size),
                "encoder_class": type(self.encoder).__name__}

    def extra_repr(self) -> str:
        return (f"encoder={type(self.encoder).__name__}, layers={self.encoder_layers}, "
                f"num_classes={self.num_classes}, width={self.width}, trained={self.trained}")


# ---------------------------------------------------------------- the objective

def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (radius ceil(2.5 sigma), replicate padding)."""
    if sigma <= 0:
        return x
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, device=x.device, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def alternative_images(x: Tensor, generator: torch.Generator | None = None, *,
                       blur_prob: float = OBJECTIVE_DEFAULTS["blur_prob"],
                       colour_prob: float = OBJECTIVE_DEFAULTS["colour_prob"],
                       blur_sigma: float = OBJECTIVE_DEFAULTS["blur_sigma"],
                       noise_std: float = OBJECTIVE_DEFAULTS["noise_std"]) -> Tensor:
    """The alternative image ``r`` of Phi(x, m) = x m + r (1 - m), one kind drawn per sample:
    with probability ``blur_prob`` a Gaussian-blurred copy of ``x`` (sigma ``blur_sigma``
    times the shorter side), with ``colour_prob`` a random constant colour (U[0, 1] per
    channel), else noise (a random colour plus Gaussian noise of std ``noise_std``, clamped
    to [0, 1]). Random draws use ``generator`` (on ``x``'s device)."""
    n, c, h, w = x.shape
    kw = {"generator": generator, "device": x.device, "dtype": x.dtype}
    u = torch.rand(n, 1, 1, 1, **kw)
    colour = torch.rand(n, c, 1, 1, **kw)
    noise = (colour + noise_std * torch.randn(n, c, h, w, **kw)).clamp(0, 1)
    blurred = _gaussian_blur(x, blur_sigma * min(h, w))
    r = torch.where(u < blur_prob + colour_prob, colour.expand(n, c, h, w), noise)
    return torch.where(u < blur_prob, blurred, r)


def _tv(m: Tensor, border: float) -> Tensor:
    """Per-sample smoothness: sum of squared neighbour differences (AdvEdge paper, r_tv) plus
    ``border`` times the sum of the squared border values, halved (as D-G's implementation)."""
    dy = (m[:, :, 1:, :] - m[:, :, :-1, :]).pow(2).sum(dim=(1, 2, 3))
    dx = (m[:, :, :, 1:] - m[:, :, :, :-1]).pow(2).sum(dim=(1, 2, 3))
    b = 0.0
    if border:
        sq = m.pow(2)
        b = border * (sq[:, :, 0, :].sum(dim=(1, 2)) + sq[:, :, -1, :].sum(dim=(1, 2))
                      + sq[:, :, :, 0].sum(dim=(1, 2)) + sq[:, :, :, -1].sum(dim=(1, 2)))
    return (dy + dx + b) / 2


def rts_objective(classifier: nn.Module, x: Tensor, mask: Tensor, target: Tensor,
                  real: Tensor, generator: torch.Generator | None = None, *,
                  smoothness: float = OBJECTIVE_DEFAULTS["smoothness"],
                  tv_border: float = OBJECTIVE_DEFAULTS["tv_border"],
                  area: float = OBJECTIVE_DEFAULTS["area"],
                  area_power: float = OBJECTIVE_DEFAULTS["area_power"],
                  preserver: float = OBJECTIVE_DEFAULTS["preserver"],
                  destroyer: float = OBJECTIVE_DEFAULTS["destroyer"],
                  destroyer_power: float = OBJECTIVE_DEFAULTS["destroyer_power"],
                  blur_prob: float = OBJECTIVE_DEFAULTS["blur_prob"],
                  colour_prob: float = OBJECTIVE_DEFAULTS["colour_prob"],
                  blur_sigma: float = OBJECTIVE_DEFAULTS["blur_sigma"],
                  noise_std: float = OBJECTIVE_DEFAULTS["noise_std"],
                  image_noise_std: float = OBJECTIVE_DEFAULTS["image_noise_std"]) -> dict:
    """The Dabkowski-Gal objective (AdvEdge paper, eq. 11, papers/advedge.txt), batch mean::

        smoothness TV(m) + area mean((m + 5e-4)^area_power)
          + preserver [real] (-log f_c(Phi(x; m))) + destroyer f_c(Phi(x; 1 - m))^destroyer_power

    with ``f`` = softmax of ``classifier``, ``c`` = ``target`` (N,), ``real`` (N,) bool: the
    requested class is the true one. For fake (wrong) classes the preserver term is dropped,
    so only area, smoothness and the destroyer term act and the mask should be empty.
    Phi(x, m) = x m + r (1 - m), ``r`` from :func:`alternative_images` (one per sample,
    shared by both terms), ``x`` first given Gaussian noise of std ``image_noise_std``. The
    area power applies to each mask element before the mean, as D-G's implementation does.
    Returns {"loss": scalar, "tv", "area", "preserver", "destroyer": per-term batch means
    (detached; preserver over the real samples)}. Defaults: :data:`OBJECTIVE_DEFAULTS`.
    """
    if mask.shape[-2:] != x.shape[-2:]:
        mask = F.interpolate(mask, size=x.shape[-2:], mode="bilinear", align_corners=False)
    kw = {"generator": generator, "device": x.device, "dtype": x.dtype}
    if image_noise_std:
        x = (x + image_noise_std * torch.randn(x.shape, **kw)).clamp(0, 1)
    r = alternative_images(x, generator, blur_prob=blur_prob, colour_prob=colour_prob,
                           blur_sigma=blur_sigma, noise_std=noise_std)
    preserved = x * mask + r * (1 - mask)
    destroyed = x * (1 - mask) + r * mask
    logp = F.log_softmax(classifier(torch.cat([preserved, destroyed])).float(), 1)
    n = x.shape[0]
    t = target[:, None]
    lp_pres, lp_destr = logp[:n].gather(1, t)[:, 0], logp[n:].gather(1, t)[:, 0]
    realf = real.to(lp_pres.dtype)
    tv = _tv(mask.float(), tv_border)
    ar = (mask.float() + 5e-4).pow(area_power).mean(dim=(1, 2, 3))
    pres = -lp_pres
    destr = torch.exp(destroyer_power * lp_destr)
    loss = (smoothness * tv + area * ar + preserver * realf * pres + destroyer * destr).mean()
    nreal = realf.sum().clamp_min(1)
    return {"loss": loss, "tv": tv.mean().detach(), "area": ar.mean().detach(),
            "preserver": ((pres * realf).sum() / nreal).detach(),
            "destroyer": destr.mean().detach()}


# ---------------------------------------------------------------- training

def _check_phase(i: int, phase: dict) -> dict:
    if not isinstance(phase, dict):
        raise ValueError(f"phase {i} must be a dict, got {type(phase).__name__}")
    unknown = sorted(set(phase) - _PHASE_KEYS)
    if unknown:
        raise ValueError(f"phase {i}: unknown keys {unknown}; known: {sorted(_PHASE_KEYS)}")
    for k in ("iterations", "batch_size", "fake_prob"):
        if k not in phase:
            raise ValueError(f"phase {i}: missing key {k!r}")
    p = dict(phase)
    p.setdefault("objective", "saliency")
    p.setdefault("trainable", "all")
    if p["objective"] not in _OBJECTIVES:
        raise ValueError(f"phase {i}: objective must be one of {_OBJECTIVES}")
    if p["trainable"] not in _TRAINABLE:
        raise ValueError(f"phase {i}: trainable must be one of {_TRAINABLE}")
    if int(p["iterations"]) < 0 or int(p["batch_size"]) < 1:
        raise ValueError(f"phase {i}: iterations must be >= 0 and batch_size >= 1")
    if not 0 <= float(p["fake_prob"]) <= 1:
        raise ValueError(f"phase {i}: fake_prob must be in [0, 1]")
    return p


class _IndexStream:
    """Batches of indices, each epoch a fresh permutation (CPU generator)."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.g, self.buf = n, generator, torch.empty(0, dtype=torch.long)

    def take(self, k: int) -> Tensor:
        while self.buf.numel() < k:
            self.buf = torch.cat([self.buf, torch.randperm(self.n, generator=self.g)])
        out, self.buf = self.buf[:k], self.buf[k:]
        return out


def train_rts(saliency: SaliencyModel, images: Tensor, labels: Tensor, *,
              phases: Sequence[dict] = DEFAULT_PHASES, lr: float = 1e-3,
              weight_decay: float = 1e-4, seed: int = 0, device=None,
              progress: Callable | bool | None = None,
              classifier: nn.Module | None = None) -> list[dict]:
    """Train the decoder and selector of ``saliency`` (docs/settings.md#advedge, "RTS saliency
    model"); returns the history, one row per iteration: ``phase`` (0-based), ``iteration``
    (1-based within the phase), ``step`` (1-based overall), ``lr``, ``loss``, ``fake_share``
    and the loss terms (``tv``, ``area``, ``preserver``, ``destroyer`` for the saliency
    objective; ``exists`` and ``exists_acc`` for the exists objective).

    ``images`` (N, C, H, W) float in [0, 1] and ``labels`` (N,) long, on the CPU (or already
    on ``device``); batches are drawn epoch by epoch from seeded permutations and moved to
    ``device`` (default: the saliency model's device; the saliency model is moved there, the
    encoder and the classifier must already be there, else a ValueError). Adam with
    ``lr`` and ``weight_decay`` (REFERENCE: 1e-3 and 1e-4), a fresh optimizer per phase.

    Each phase is a dict: ``iterations``, ``batch_size``, ``fake_prob`` (the probability that
    a sample's requested class is a random other class, "fake labels"), optional
    ``smoothness`` (the TV coefficient) and any other key of :data:`OBJECTIVE_DEFAULTS`;
    ``objective``: ``"saliency"`` (eq. 11, :func:`rts_objective`; default) or ``"exists"``
    (binary cross-entropy of the selector's class-exists logit against real/fake);
    ``trainable``: ``"all"`` (default), ``"decoder"`` (all but the selector) or ``"selector"``;
    optional ``lr`` and ``lr_decay_every`` (divide the learning rate by 10 every so many
    iterations). :data:`DEFAULT_PHASES` are the authors' two phases.

    ``classifier``: the black box f of eq. 11 (default: the saliency model's encoder). The
    encoder and the classifier are frozen: in eval mode during training (their modes are
    restored afterwards; BatchNorm statistics stay untouched) and never updated (gradients go
    to the saliency model's parameters only). ``seed`` fixes batches, fake labels and every
    random draw (reproducible on the CPU). ``progress``: a callable ``(step, total, row)``
    called after every iteration; ``None``/``True`` a tqdm bar; ``False`` nothing.
    Sets ``saliency.trained`` once every phase has run.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError("images must be a float tensor (N, C, H, W)")
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be integer class indices of shape ({images.shape[0]},)")
    labels = labels.long()
    n, num_classes = images.shape[0], saliency.num_classes
    if n == 0:
        raise ValueError("no training images")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"labels out of range [0, {num_classes})")
    phases = [_check_phase(i, p) for i, p in enumerate(phases)]
    if device is None:
        device = next(saliency.parameters()).device
    device = torch.device(device)
    saliency.to(device)
    encoder = saliency.encoder
    classifier = encoder if classifier is None else classifier
    for what, mod in (("encoder", encoder), ("classifier", classifier)):
        d = _param_device_dtype(mod)[0]
        if d.type != device.type or (d.index or 0) != (device.index or 0):
            raise ValueError(f"the {what} is on {d}, training runs on {device}: move it first")
    total = sum(int(p["iterations"]) for p in phases)

    bar = None
    if progress is None or progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="rts", leave=False)
    call = progress if callable(progress) else None

    g_idx = torch.Generator().manual_seed(int(seed))
    g_dev = torch.Generator(device=device).manual_seed(int(seed) + 1)
    stream = _IndexStream(n, g_idx)
    frozen = [m for mod in {id(encoder): encoder, id(classifier): classifier}.values()
              for m in mod.modules()]
    modes = {m: m.training for m in frozen}
    sal_mode = saliency.training
    history: list[dict] = []
    step = 0
    try:
        for m in frozen:
            m.training = False
        saliency.train()
        for pi, phase in enumerate(phases):
            params = {"all": lambda: list(saliency.parameters()),
                      "decoder": lambda: saliency.decoder_parameters,
                      "selector": lambda: list(saliency.selector.parameters())}[
                phase["trainable"]]()
            phase_lr = float(phase.get("lr", lr))
            opt = torch.optim.Adam(params, lr=phase_lr, weight_decay=weight_decay)
            coefs = {k: phase[k] for k in OBJECTIVE_DEFAULTS if k in phase}
            decay = phase.get("lr_decay_every")
            bs, fake_prob = int(phase["batch_size"]), float(phase["fake_prob"])
            for it in range(1, int(phase["iterations"]) + 1):
                idx = stream.take(bs)
                xb = images[idx].to(device, non_blocking=True)
                yb = labels[idx].to(device)
                fake = torch.rand(bs, generator=g_dev, device=device) < fake_prob
                offset = torch.randint(1, num_classes, (bs,), generator=g_dev, device=device)
                target = torch.where(fake, (yb + offset) % num_classes, yb)
                real = ~fake
                with torch.no_grad():
                    feats, _ = saliency.encode(xb)
                mask, exists = saliency.decode([f.detach() for f in feats], target,
                                               xb.shape[-2:])
                if phase["objective"] == "exists":
                    loss = F.binary_cross_entropy_with_logits(exists.float(), real.float())
                    terms = {"exists": loss.detach(),
                             "exists_acc": ((exists > 0) == real).float().mean()}
                else:
                    out = rts_objective(classifier, xb, mask, target, real, g_dev, **coefs)
                    loss = out.pop("loss")
                    terms = out
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for p, gr in zip(params, grads):
                    p.grad = gr
                opt.step()
                opt.zero_grad(set_to_none=True)
                if decay and it % int(decay) == 0:
                    for group in opt.param_groups:
                        group["lr"] /= 10.0
                step += 1
                row = {"phase": pi, "iteration": it, "step": step,
                       "lr": opt.param_groups[0]["lr"], "loss": float(loss.detach()),
                       "fake_share": float(fake.float().mean()),
                       **{k: float(v) for k, v in terms.items()}}
                history.append(row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(phase=pi, loss=f"{row['loss']:.4f}", refresh=False)
                if call is not None:
                    call(step, total, row)
    finally:
        for m, mode in modes.items():
            m.training = mode
        saliency.train(sal_mode)
        if bar is not None:
            bar.close()
    saliency.trained = True
    return history


# ---------------------------------------------------------------- checkpoints

def save_rts(path, saliency: SaliencyModel, meta: dict | None = None) -> None:
    """Write the decoder and selector weights of a trained ``saliency`` (not the encoder)
    with the model's configuration, the encoder's fingerprint and ``meta`` (JSON-serialisable:
    e.g. training settings and data) to ``path``, atomically (:func:`xaisec.io.atomic_path`).
    Read back with :func:`load_rts`."""
    from xaisec.io import atomic_path

    if not isinstance(saliency, SaliencyModel):
        raise TypeError(f"expected a SaliencyModel, got {type(saliency).__name__}")
    if not saliency.trained:
        raise ValueError("refusing to save an untrained SaliencyModel (train it with train_rts)")
    meta = dict(meta or {})
    try:
        meta = json.loads(json.dumps(meta))
    except (TypeError, ValueError) as e:
        raise ValueError(f"meta must be JSON-serialisable: {e}") from None
    obj = {"format": _FORMAT, "format_version": FORMAT_VERSION, "config": saliency.config(),
           "encoder_fingerprint": encoder_fingerprint(saliency.encoder), "meta": meta,
           "state_dict": {k: v.detach().cpu() for k, v in saliency.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_rts(path, encoder: nn.Module, map_location=None, *,
             check_encoder: bool = True) -> SaliencyModel:
    """The trained :class:`SaliencyModel` saved at ``path`` by :func:`save_rts`, rebuilt around
    ``encoder`` (in eval mode; ``trained`` set; its ``meta`` attribute holds the saved meta).
    Device: ``map_location``, else the encoder's.

    A file that is not an RTS checkpoint, of another format version, truncated or corrupt, or
    that does not fit ``encoder`` (its layers, channels, input size, number of classes; with
    ``check_encoder``, also its weights' fingerprint: the decoder was trained on that
    encoder's features) raises a ValueError naming the file and the mismatch."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"missing RTS checkpoint: {path}") from None
    except Exception as e:  # truncated, corrupt or foreign
        raise ValueError(f"{path}: cannot read RTS checkpoint, the file is truncated or "
                         f"corrupt ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or obj.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an RTS checkpoint (no format {_FORMAT!r})")
    version = obj.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: RTS checkpoint format version {version!r}, this code reads "
                         f"version {FORMAT_VERSION}")
    cfg, state = obj.get("config"), obj.get("state_dict")
    keys = ("num_classes", "encoder_layers", "layer_channels", "width", "input_size")
    if not isinstance(cfg, dict) or not isinstance(state, dict) or any(k not in cfg for k in keys):
        raise ValueError(f"{path}: malformed RTS checkpoint (config or state_dict missing)")
    try:
        sal = SaliencyModel(encoder, cfg["num_classes"], list(cfg["encoder_layers"]),
                            width=cfg["width"], input_size=tuple(cfg["input_size"]))
    except ValueError as e:
        raise ValueError(f"{path} does not fit encoder {type(encoder).__name__}: {e}") from None
    if sal.layer_channels != list(cfg["layer_channels"]):
        raise ValueError(f"{path} does not fit encoder {type(encoder).__name__}: layers "
                         f"{sal.encoder_layers} have {sal.layer_channels} channels, the "
                         f"checkpoint's {list(cfg['layer_channels'])}")
    saved_sizes = cfg.get("layer_sizes")
    if saved_sizes is not None and [list(s) for s in saved_sizes] != sal.layer_sizes:
        raise ValueError(f"{path} does not fit encoder {type(encoder).__name__}: layer sizes "
                         f"{sal.layer_sizes}, the checkpoint's {saved_sizes}")
    if check_encoder:
        fp = encoder_fingerprint(encoder)
        if obj.get("encoder_fingerprint") != fp:
            raise ValueError(f"{path} was trained on another encoder (weights fingerprint "
                             f"{str(obj.get('encoder_fingerprint'))[:12]}..., this encoder's "
                             f"{fp[:12]}...); pass the encoder it was trained with (or "
                             "check_encoder=False)")
    expected = sal.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected)
                   if not isinstance(state[k], Tensor) or state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: RTS weights do not fit the model (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]})")
    sal.load_state_dict(state)
    if map_location is None:
        map_location = _param_device_dtype(encoder)[0]
    sal = sal.to(map_location).eval()
    sal.trained = True
    sal.meta = obj.get("meta") or {}
    return sal


# ---------------------------------------------------------------- the explainer

class RTS(Explainer):
    """Real-time saliency (Dabkowski & Gal 2017), the AdvEdge paper's model-guided
    interpreter (Section IV-E, papers/advedge.txt; docs/settings.md#advedge): the mask of a
    trained :class:`SaliencyModel` for the explained class, shape (N, 1, H, W) in [0, 1].

    ``model``: the classifier whose ``target`` is explained (None = its argmax);
    ``saliency``: a trained saliency model (from :func:`train_rts` or :func:`load_rts`; a
    missing or untrained one is a ValueError: never a random decoder). ``extra``:
    ``encoder_logits`` (N, classes), the saliency encoder's logits on the input (the AdvEdge
    attack adds an encoder term on them). ``create_graph=True`` keeps the map and both logits
    in the graph (differentiable with respect to the input). When ``model`` is the saliency
    model's encoder, one forward pass serves both.
    """

    name = "rts"
    map_channels = 1
    differentiable = True

    def __init__(self, model: nn.Module, saliency: SaliencyModel | None = None):
        super().__init__(model)
        if saliency is None:
            raise ValueError("RTS needs a trained SaliencyModel (train_rts, or load_rts(path, "
                             "encoder)); it never explains with a random decoder")
        if not isinstance(saliency, SaliencyModel):
            raise TypeError(f"saliency must be a SaliencyModel, got {type(saliency).__name__}")
        if not saliency.trained:
            raise ValueError("the SaliencyModel is untrained: train it with train_rts or load "
                             "a trained one with load_rts")
        self.saliency = saliency

    @classmethod
    def from_checkpoint(cls, model: nn.Module, path, encoder: nn.Module | None = None,
                        map_location=None) -> "RTS":
        """``RTS(model, load_rts(path, encoder or model, map_location))``."""
        return cls(model, load_rts(path, model if encoder is None else encoder, map_location))

    def _attribute(self, x, target, create_graph):
        with torch.set_grad_enabled(create_graph):
            feats, enc_logits = self.saliency.encode(x)
            logits = enc_logits if self.model is self.saliency.encoder else self.model(x)
            if logits.shape[1] != self.saliency.num_classes:
                raise ValueError(f"the model has {logits.shape[1]} classes, the saliency "
                                 f"model {self.saliency.num_classes}")
            t = resolve_target(target, logits)
            mask, _ = self.saliency.decode(feats, t, x.shape[-2:])
        return Explanation(mask.to(x.dtype), logits, t, {"encoder_logits": enc_logits})

    def __repr__(self) -> str:
        return (f"RTS({type(self.model).__name__}, saliency={type(self.saliency.encoder).__name__}"
                f" layers={self.saliency.encoder_layers})")
