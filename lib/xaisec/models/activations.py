"""AdvEdge's smoothed ReLU: relu forward, a smooth surrogate derivative backward.

The interpretation-aware attacks on Grad (AdvEdge/ADV2) backpropagate a loss on the gradient
map to the input, which needs second derivatives of the activations; ReLU's are zero, so they
replace ReLU's backward by a smooth surrogate (:class:`SmoothReLU`, installed with
:func:`use_smooth_relu` on activation modules, or :func:`smooth_relu_mode` for every ReLU a
forward pass calls, functional ones included: torchvision's DenseNet and Inception-v3 call
``F.relu`` inside their ``forward`` methods).

This module imports nothing from :mod:`xaisec.models.classifiers`, so ``models`` may import
:class:`SmoothReLU` from the package without an import cycle.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["SmoothReLU", "SmoothReLUMode", "plain_relu", "smooth_relu", "smooth_relu_mode",
           "use_smooth_relu"]


class _SmoothReLUFunction(torch.autograd.Function):
    """relu(z) forward; backward ``g * h(z)`` with AdvEdge's smoothed derivative (eq. in
    Section III-C of the AdvEdge paper; docs/settings.md, AdvEdge, "ReLU smoothing")::

        h(z) = 1 + z / sqrt(z^2 + tau)   for z <  0
        h(z) =     z / sqrt(z^2 + tau)   for z >= 0

    The backward is written with differentiable torch operations on the saved input, so it
    has its own derivative (double backward): ``d h / d z = tau / (z^2 + tau)^(3/2)`` on both
    sides of 0, non-zero, unlike ReLU's. (h jumps from 1 to 0 at z = 0, as in the formula.)
    """

    @staticmethod
    def forward(ctx, z: Tensor, tau: float) -> Tensor:
        ctx.save_for_backward(z)
        ctx.tau = tau
        return z.clamp_min(0)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (z,) = ctx.saved_tensors
        s = z / torch.sqrt(z * z + ctx.tau)
        h = torch.where(z < 0, 1 + s, s)
        return grad_out * h, None


def smooth_relu(z: Tensor, tau: float = 1e-4) -> Tensor:
    """Functional form of :class:`SmoothReLU`."""
    return _SmoothReLUFunction.apply(z, tau)


class SmoothReLU(nn.Module):
    """ReLU whose backward is AdvEdge's smoothed derivative (see :func:`smooth_relu`).

    The forward value is exactly ``relu(z)``; only gradients differ (by at most
    ``tau / (2 z^2)`` away from 0), and second derivatives are non-zero, which the
    interpretation-aware attacks on Grad need. ``tau`` = 1e-4 (docs/settings.md, AdvEdge).
    """

    def __init__(self, tau: float = 1e-4):
        super().__init__()
        self.tau = float(tau)

    def forward(self, z: Tensor) -> Tensor:
        return smooth_relu(z, self.tau)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


def use_smooth_relu(model: nn.Module, tau: float = 1e-4) -> nn.Module:
    """Replace every activation module (ReLU, Softplus or SmoothReLU) of ``model`` in place by
    :class:`SmoothReLU` (same attribute names), and return the model. Modules with a true
    ``keeps_plain_relu`` attribute are left alone with everything inside them (their ReLUs
    compute another operation: :class:`xaisec.models.imagenet.DeepLiftMaxPool2d`'s max).

    Functional ``F.relu`` / ``torch.relu`` calls inside ``forward`` methods are not reached
    (the project's CIFAR models use activation modules only; torchvision's DenseNet and
    Inception-v3 do call them): use :func:`smooth_relu_mode` for those.
    """
    def swap(module: nn.Module) -> None:
        if getattr(module, "keeps_plain_relu", False):
            return
        for child_name, child in list(module.named_children()):
            if isinstance(child, (nn.ReLU, nn.Softplus, SmoothReLU)):
                setattr(module, child_name, SmoothReLU(tau))
            else:
                swap(child)

    swap(model)
    return model


#: The ReLU entry points :class:`SmoothReLUMode` reroutes. ``nn.ReLU`` modules call
#: ``F.relu``; ``F.relu_`` is ``torch.relu_``; ``Tensor.relu`` / ``relu_`` are the methods.
_OUT_OF_PLACE = (F.relu, torch.relu, Tensor.relu)
_IN_PLACE = (torch.relu_, Tensor.relu_)
_PLAIN = contextvars.ContextVar("xaisec_plain_relu", default=False)


@contextmanager
def plain_relu():
    """Inside this block ReLUs keep relu's own backward under :func:`smooth_relu_mode`: for
    code whose ReLUs compute another operation, such as the max of
    :class:`xaisec.models.imagenet.DeepLiftMaxPool2d` (``m + relu(v - m)``), which AdvEdge's
    smoothing of the network's activations must not turn into a soft maximum."""
    token = _PLAIN.set(True)
    try:
        yield
    finally:
        _PLAIN.reset(token)


class SmoothReLUMode(TorchFunctionMode):
    """A torch function mode that computes every ReLU called while it is active with
    :func:`smooth_relu` (see :func:`smooth_relu_mode`, which makes one)."""

    def __init__(self, tau: float = 1e-4):
        super().__init__()
        self.tau = float(tau)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _OUT_OF_PLACE:
            inplace = func is F.relu and bool(kwargs.get("inplace", args[1] if len(args) > 1
                                                         else False))
        elif func in _IN_PLACE:
            inplace = True
        else:
            return func(*args, **kwargs)
        z = args[0] if args else kwargs["input"]
        if _PLAIN.get() or not (torch.is_grad_enabled() and z.requires_grad):
            return func(*args, **kwargs)  # no graph recorded: relu's value is all that counts
        if not inplace:
            return smooth_relu(z, self.tau)
        # In place: the surrogate saves its input for the backward, so it gets a copy (the
        # write below would otherwise invalidate it); the result is written back into ``z``,
        # whose history autograd then routes through the surrogate, as relu_ would.
        return z.copy_(smooth_relu(z.clone(), self.tau))


def smooth_relu_mode(tau: float = 1e-4) -> SmoothReLUMode:
    """A context manager under which every ReLU is AdvEdge's smoothed ReLU (:func:`smooth_relu`):
    ``torch.relu``, ``torch.relu_``, ``F.relu`` (``inplace`` or not; ``F.relu_``),
    ``Tensor.relu`` and ``Tensor.relu_``, and so every ``nn.ReLU`` module (which calls
    ``F.relu``). :class:`SmoothReLU` modules already are smoothed and keep their own ``tau``;
    Softplus and other activations are untouched, as are ReLUs written another way
    (``clamp(min=0)``, ``torch.ops.aten.relu``) and those run inside :func:`plain_relu` (the
    max-pools of the DeepLift-safe ImageNet networks)::

        with smooth_relu_mode():                 # AdvEdge paper, Section IV-C (h(z));
            expl = Gradient(model).attribute(x, create_graph=True)   # tau: docs/settings.md
            loss = ((expl.maps - target) ** 2).sum()
            (g,) = torch.autograd.grad(loss, x)   # second derivatives of the ReLUs: non-zero

    Forward values are exactly those of ``relu`` (same ``clamp_min(0)``); only the graph
    recorded inside the block differs (its backward is the smoothed derivative, which has a
    derivative of its own). The mode is a :class:`torch.overrides.TorchFunctionMode`: it is
    active in the ``with`` block only (on exit, also by an exception, plain ReLU is back), in
    the thread that entered it. Where no graph is recorded (``torch.no_grad()``, inputs that do
    not require grad) ReLU runs as usual. A graph recorded inside the block keeps the smoothed
    backward when differentiated after it; the forward pass must run inside.
    """
    return SmoothReLUMode(tau)
