"""The interpretation-ensemble adversarial detector of the AdvEdge paper (Sec. VI-A, Tables IV
and V; docs/settings.md#advedge): the attribution maps of an input under two or three
interpreters, stacked as channels, are classified benign or adversarial.

* :func:`stack_maps`: the maps of 2 interpreters as 2 channels (optionally their product as a
  third) or of 3 interpreters as 3 channels, each resized to one side and min-max normalised.
* :class:`MapFeatures`: a convolutional feature extractor (the paper: ImageNet-pretrained
  VGG-16) whose input layer is replaced by one taking the stacked channels and whose output
  layer by a 2-class head; only those two layers are trained (:meth:`MapFeatures.fit`), the
  rest stays frozen. :meth:`MapFeatures.features` gives the pooled convolutional features.
* :class:`MapDetector`: those features, then scikit-learn's gradient boosting (the paper's
  final layer in place of the fully connected one).
* :func:`split_by_source`: a train/test split by source image, so a benign input and its
  adversarial version never fall on both sides.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MapDetector", "MapFeatures", "split_by_source", "stack_maps"]


def _minmax(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    lo, hi = flat.min(1).values, flat.max(1).values
    return ((flat - lo[:, None]) / (hi - lo).clamp_min(1e-12)[:, None]).view_as(m)


def stack_maps(maps, size: int, product: bool = False) -> torch.Tensor:
    """(N, C, size, size) float32: each interpreter's maps (a list of (N, 1, h, w) or (N, h, w)
    arrays, one per interpreter) resized bilinearly to ``size`` and min-max normalised per
    image; ``product``: a third channel, the product of two maps (Table IV, lower part)."""
    chans = []
    for m in maps:
        t = torch.as_tensor(np.ascontiguousarray(m), dtype=torch.float32)
        t = t[:, None] if t.dim() == 3 else t
        if t.dim() != 4 or t.shape[1] != 1:
            raise ValueError(f"maps must be (N, 1, h, w) or (N, h, w), got {tuple(t.shape)}")
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        chans.append(_minmax(t))
    if len({c.shape[0] for c in chans}) != 1:
        raise ValueError("every interpreter needs one map per input")
    if product:
        if len(chans) != 2:
            raise ValueError("the product channel combines exactly two interpreters")
        chans.append(chans[0] * chans[1])
    return torch.cat(chans, dim=1)


def split_by_source(source, test_fraction: float = 0.3, seed: int = 0) -> tuple:
    """Boolean train and test masks over inputs whose source image ids are ``source``: whole
    source images go to one side (seeded)."""
    source = np.asarray(source)
    ids = np.unique(source)
    rng = np.random.default_rng(seed)
    test_ids = rng.choice(ids, size=int(round(test_fraction * len(ids))), replace=False)
    test = np.isin(source, test_ids)
    return ~test, test


class MapFeatures(nn.Module):
    """A frozen convolutional backbone (``features``: an ``nn.Sequential`` of layers whose first
    is a ``Conv2d``) with a new first convolution for ``in_channels`` and a new 2-class head
    on its output average-pooled to ``pool`` x ``pool`` (VGG-16 at 32 px ends at 1 x 1; the
    paper's 224 px at 7 x 7); only those two are trainable."""

    def __init__(self, features: nn.Sequential, in_channels: int, pool: int = 2):
        super().__init__()
        self.pool = int(pool)
        features = copy.deepcopy(features)
        first = features[0]
        if not isinstance(first, nn.Conv2d):
            raise ValueError("the backbone's first layer must be a Conv2d (its input layer)")
        for p in features.parameters():
            p.requires_grad_(False)
        features[0] = nn.Conv2d(in_channels, first.out_channels, first.kernel_size,
                                first.stride, first.padding, bias=first.bias is not None)
        self.features = features
        with torch.no_grad():
            dim = self._pooled(torch.zeros(1, in_channels, 32, 32)).shape[1]
        self.head = nn.Linear(dim, 2)

    def _pooled(self, x):
        return F.adaptive_avg_pool2d(self.features(x), self.pool).flatten(1)

    def forward(self, x):
        return self.head(self._pooled(x))

    def trainable(self) -> list:
        return list(self.features[0].parameters()) + list(self.head.parameters())

    def fit(self, x: torch.Tensor, y: torch.Tensor, epochs: int = 5, batch_size: int = 64,
            lr: float = 1e-3, seed: int = 0) -> list[float]:
        """Train the new input and output layers (Adam) on stacked maps ``x`` and labels ``y``
        (1 adversarial); returns the loss per epoch."""
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(self.trainable(), lr=lr)
        self.train()
        self.features.eval()                  # frozen BatchNorm statistics, if any
        losses = []
        for _ in range(epochs):
            perm, total = torch.randperm(len(x), generator=gen), 0.0
            for i in range(0, len(x), batch_size):
                idx = perm[i:i + batch_size]
                loss = F.cross_entropy(self(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / max(len(x), 1))
        self.eval()
        return losses

    @torch.no_grad()
    def features_of(self, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """The pooled convolutional features (N, D) the gradient boosting classifies."""
        self.eval()
        return torch.cat([self._pooled(x[i:i + batch_size])
                          for i in range(0, len(x), batch_size)]).numpy()


class MapDetector:
    """Stacked maps -> :class:`MapFeatures` (input/output layers trained) -> gradient boosting
    (scikit-learn ``GradientBoostingClassifier`` with its settings)."""

    def __init__(self, backbone: nn.Sequential, in_channels: int, epochs: int = 5,
                 lr: float = 1e-3, seed: int = 0, pool: int = 2, **boosting):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)             # the new layers' initialisation
            self.net = MapFeatures(backbone, in_channels, pool)
        self.epochs, self.lr, self.seed = epochs, lr, seed
        self.boosting = {"random_state": seed, **boosting}
        self.clf = None

    def fit(self, x: torch.Tensor, y) -> "MapDetector":
        from sklearn.ensemble import GradientBoostingClassifier

        y_t = torch.as_tensor(np.asarray(y), dtype=torch.long)
        self.net.fit(x, y_t, epochs=self.epochs, lr=self.lr, seed=self.seed)
        self.clf = GradientBoostingClassifier(**self.boosting).fit(self.net.features_of(x),
                                                                   y_t.numpy())
        return self

    def predict(self, x: torch.Tensor) -> np.ndarray:
        if self.clf is None:
            raise RuntimeError("fit the detector first")
        return self.clf.predict(self.net.features_of(x))

    def accuracy(self, x: torch.Tensor, y) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())
