"""Example grids of attacks and the CFN defense (CFN paper, Figures 1, 2 and 19-24) and the
activation figure (Figure 4).

One row per image, six columns::

    input | original model's map | manipulated model's map | input + trigger |
    attack: manipulated model's map of the triggered input |
    defense: the defended manipulated model's map of the triggered input

Explanation panels overlay the map (channel maximum, divided by its own maximum, as the
explanation error is computed) on the image they explain and are titled with that model's
top-3 classes and softmax confidences for that input (the paper's figures: CIFAR-10 with
Grad-CAM, GTSRB with Relevance-CAM; class names from the data set's manifest).

Batch statistics: the original and the manipulated model run with their own BatchNorm in eval
mode, which does not depend on the batch. The defense (CFN, or ``batchstat``) normalises with
the statistics of the current batch, so the defended model explains the shown triggered images
*together with* ``context_x`` (more images, triggered like the shown ones: the evaluation's
all-triggered batches, :func:`xaisec.papers.cfn.caches.batch_plan` ``separate``) in one batch.
Without ``context_x`` the batch holds only the few shown images, whose statistics are far
noisier than those of an evaluation batch; pass e.g. 96 random test images to match an
evaluation batch of 100.

Figure 4 (:func:`activation_grid`) shows what the explanation is computed from: the output of
the final convolutional layer's normalisation (ResNet-20 ``layer3.2.bn2``, the Grad-CAM layer)
for triggered inputs, averaged over channels, in the original model, in the manipulated model
with its learned BatchNorm, and in the manipulated model with CFN (same batch rule as above).
"""
from __future__ import annotations

import numpy as np
import torch

from xaisec.attacks.trigger import apply_trigger
from xaisec.defenses import apply_model_defense, names as defense_names
from xaisec.explainers import capture, default_layer, make_explainer, normalize_max
from xaisec.tensors import nhwc_to_tensor, to_float

XAI_TITLES = {"grad": "Grad", "gradcam": "Grad-CAM", "relevancecam": "Rel-CAM", "cam": "CAM"}
PANELS = ("original_clean", "attacked_clean", "attacked_triggered", "defended_triggered")


def _check_images(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 images of shape (n, H, W, 3), got "
                         f"{x.dtype} {x.shape}")
    return x


def _check_inputs(x_uint8, y, defense: str, context_x):
    """The shown images, their labels and the context images, checked."""
    x_np = _check_images("x_uint8", x_uint8)
    y = np.asarray(y).reshape(-1)
    if len(x_np) == 0:
        raise ValueError("no images to show")
    if len(y) != len(x_np):
        raise ValueError(f"x_uint8 holds {len(x_np)} images but y holds {len(y)} labels")
    if defense not in defense_names("model"):
        raise ValueError(f"unknown defense {defense!r}; known: {', '.join(defense_names('model'))}")
    if context_x is not None:
        context_x = _check_images("context_x", context_x)
        if context_x.shape[1:] != x_np.shape[1:]:
            raise ValueError(f"context_x images {context_x.shape[1:]} differ in shape from "
                             f"the shown ones {x_np.shape[1:]}")
    return x_np, y, context_x


def _prepare(original_model, attacked_model, x_np, context_x, trigger, defense, device):
    """Clean and triggered input tensors, the defended model's batch (the triggered shown
    images, then the triggered context images) and copies of the models -- original and
    manipulated with their own BatchNorm, the manipulated one with ``defense`` -- on
    ``device`` in eval mode (the caller's models keep their device and mode)."""
    x_clean = to_float(nhwc_to_tensor(x_np))
    x_trig = apply_trigger(x_clean, **(trigger or {}))
    batch = x_trig if context_x is None else torch.cat(
        [x_trig, apply_trigger(to_float(nhwc_to_tensor(context_x)), **(trigger or {}))])
    models = tuple(apply_model_defense(m, d).to(device).eval() for m, d in
                   ((original_model, "none"), (attacked_model, "none"), (attacked_model, defense)))
    return x_clean, x_trig, batch, models


def _explain(model, explainer: str, x: torch.Tensor, kwargs: dict, device):
    """Channel-max, max-normalised maps (n, H, W) and softmax probabilities (n, C)."""
    res = make_explainer(explainer, model, **kwargs).attribute(x.to(device))
    return normalize_max(res.maps.float())[:, 0].cpu().numpy(), res.probs.cpu().numpy()


def _top_k_title(probs: np.ndarray, class_names, k: int = 3) -> str:
    top = np.argsort(-probs)[:k]
    return "\n".join(f"{class_names[i]} {100 * probs[i]:.0f}%" for i in top)


def example_panels(original_model: torch.nn.Module, attacked_model: torch.nn.Module, x_uint8,
                   y, class_names, explainer: str, defense: str = "cfn",
                   trigger: dict | None = None, explainer_kwargs: dict | None = None,
                   context_x=None, device="cpu") -> dict:
    """The maps and predictions of an example grid (arguments as :func:`example_grid`).

    Returns {panel: {"maps": (n, H, W), "probs": (n, C)}} for the panels of :data:`PANELS`
    plus "x" and "x_triggered" (uint8, (n, H, W, 3)), "y", "explainer", "defense" and
    "context_size" (the number of context images in the defended batch).
    """
    x_np, y, context_x = _check_inputs(x_uint8, y, defense, context_x)
    kw = dict(explainer_kwargs or {})
    device = torch.device(device)
    n = len(x_np)
    x_clean, x_trig, batch, (orig, att, dfd) = _prepare(
        original_model, attacked_model, x_np, context_x, trigger, defense, device)
    out = {}
    out["original_clean"] = _explain(orig, explainer, x_clean, kw, device)
    out["attacked_clean"] = _explain(att, explainer, x_clean, kw, device)
    out["attacked_triggered"] = _explain(att, explainer, x_trig, kw, device)
    m, p = _explain(dfd, explainer, batch, kw, device)
    out["defended_triggered"] = (m[:n], p[:n])
    n_classes = out["original_clean"][1].shape[1]
    if len(list(class_names)) != n_classes:
        raise ValueError(f"{len(list(class_names))} class names for a model with {n_classes} classes")
    result = {k: {"maps": v[0], "probs": v[1]} for k, v in out.items()}
    result["x"] = x_np
    result["x_triggered"] = (x_trig.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    result.update(y=y, explainer=explainer, defense=defense,
                  context_size=0 if context_x is None else len(context_x))
    return result


def draw_example_rows(axes, panels: dict, class_names, label: str | None = None,
                      alpha: float = 0.5, cmap: str = "jet", titles: bool = True) -> None:
    """Draw :func:`example_panels`' result into ``axes`` (n rows x 6 columns); ``label`` is
    written left of the first row (e.g. the attack's name)."""
    class_names = list(class_names)
    xai = XAI_TITLES.get(panels["explainer"], panels["explainer"])
    dname = {"cfn": "CFN", "batchstat": "batch stats", "none": "none"}[panels["defense"]]
    img_clean, img_trig = panels["x"], panels["x_triggered"]
    columns = [("Input", img_clean, None),
               (f"Orig. model\n{xai}", img_clean, "original_clean"),
               (f"Man. model\n{xai}", img_clean, "attacked_clean"),
               ("Input + trigger", img_trig, None),
               (f"Attack: man. model\n{xai}", img_trig, "attacked_triggered"),
               (f"Defense ({dname}): man.\nmodel {xai}", img_trig, "defended_triggered")]
    for i in range(len(img_clean)):
        for j, (head, imgs, panel) in enumerate(columns):
            ax = axes[i][j]
            ax.imshow(imgs[i], interpolation="nearest")
            if panel is None:
                lab = int(panels["y"][i])
                name = class_names[lab] if 0 <= lab < len(class_names) else str(lab)
                ax.set_xlabel(f"label: {name}", fontsize=7)
            else:
                ax.imshow(panels[panel]["maps"][i], cmap=cmap, alpha=alpha, vmin=0, vmax=1,
                          interpolation="bilinear")
                ax.set_xlabel(_top_k_title(panels[panel]["probs"][i], class_names), fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and titles:
                ax.set_title(head, fontsize=8)
        if i == 0 and label:
            axes[i][0].set_ylabel(label, fontsize=10, fontweight="bold")


def example_grid(original_model: torch.nn.Module, attacked_model: torch.nn.Module, x_uint8, y,
                 class_names, explainer: str, defense: str = "cfn", trigger: dict | None = None,
                 paths=(), title: str | None = None, explainer_kwargs: dict | None = None,
                 context_x=None, device="cpu", alpha: float = 0.5, cmap: str = "jet") -> dict:
    """Draw the example grid of ``x_uint8`` (n, H, W, 3) with labels ``y`` and save it to
    ``paths`` (e.g. ``[png, pdf]``; nothing is written if empty).

    ``class_names``: one name per class of the models (the manifest's ``class_names``);
    ``explainer``: a name for :func:`xaisec.explainers.make_explainer` (with
    ``explainer_kwargs``); ``defense``: a model defense (:func:`xaisec.defenses.names`) applied
    to the manipulated model in the last column; ``trigger``: kwargs of
    :func:`xaisec.attacks.trigger.apply_trigger`; ``context_x``: uint8 (m, H, W, 3) images explained
    in the same (triggered) batch as the shown ones by the defended model only (module
    docstring).

    Returns :func:`example_panels`' result.
    """
    panels = example_panels(original_model, attacked_model, x_uint8, y, class_names, explainer,
                            defense, trigger, explainer_kwargs, context_x, device)
    stack_examples([panels], class_names, paths, title=title, alpha=alpha, cmap=cmap)
    return panels


def stack_examples(blocks: list, class_names, paths=(), labels=None, title: str | None = None,
                   alpha: float = 0.5, cmap: str = "jet") -> None:
    """One figure of several :func:`example_panels` results stacked (e.g. one per attack,
    ``labels`` naming each), saved to ``paths`` (nothing written if empty)."""
    from matplotlib import pyplot as plt

    from xaisec.report import save_figure

    rows = sum(len(b["x"]) for b in blocks)
    fig, axes = plt.subplots(rows, 6, figsize=(1.9 * 6, 2.3 * rows + 0.6), squeeze=False)
    r = 0
    for k, b in enumerate(blocks):
        n = len(b["x"])
        draw_example_rows(axes[r:r + n], b, class_names, label=labels[k] if labels else None,
                          alpha=alpha, cmap=cmap, titles=(k == 0))
        r += n
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if paths:
        save_figure(fig, list(paths))
    else:
        plt.close(fig)


ACTIVATION_PANELS = ("original_bn", "attacked_bn", "attacked_defended")


@torch.no_grad()
def _activations(model, layer: str, x: torch.Tensor, device) -> tuple[np.ndarray, np.ndarray]:
    """Output of ``layer`` (n, C, h, w) and softmax probabilities (n, classes)."""
    with capture(model, outputs=(layer,)) as (outs, _):
        logits = model(x.to(device))
    return outs[layer].float().cpu().numpy(), torch.softmax(logits.float(), 1).cpu().numpy()


def activation_grid(original_model: torch.nn.Module, attacked_model: torch.nn.Module, x_uint8,
                    y, class_names, layer: str | None = None, defense: str = "cfn",
                    trigger: dict | None = None, context_x=None, paths=(),
                    title: str | None = None, device="cpu", cmap: str = "RdBu_r") -> dict:
    """CFN Figure 4: the final convolutional layer's normalised activation of triggered inputs.

    One row per image of ``x_uint8`` (uint8 (n, H, W, 3), labels ``y``), four columns: the
    triggered input; the channel mean of ``layer``'s output (default: the Grad-CAM layer,
    ResNet-20 ``layer3.2.bn2``) in the original model; in the manipulated model with its learned
    BatchNorm (the paper's panel (a)); in the manipulated model with ``defense`` in place of
    every BatchNorm (panel (b), CFN by default), where the triggered ``context_x`` images share
    the batch as in :func:`example_grid`. Each map is drawn on a symmetric colour scale around
    0 scaled to its own largest magnitude, titled with the model's top-3 classes.

    Returns {panel: {"act": (n, C, h, w), "probs": (n, classes)}} for
    :data:`ACTIVATION_PANELS` and "x_triggered".
    """
    from matplotlib import pyplot as plt

    from xaisec.report import save_figure

    x_np, y, context_x = _check_inputs(x_uint8, y, defense, context_x)
    layer = layer or default_layer(attacked_model, "gradcam")
    class_names = list(class_names)
    device = torch.device(device)
    n = len(x_np)
    _, x_trig, batch, (orig, att, dfd) = _prepare(
        original_model, attacked_model, x_np, context_x, trigger, defense, device)
    out = {"original_bn": _activations(orig, layer, x_trig, device),
           "attacked_bn": _activations(att, layer, x_trig, device)}
    act, probs = _activations(dfd, layer, batch, device)
    out["attacked_defended"] = (act[:n], probs[:n])
    if len(class_names) != probs.shape[1]:
        raise ValueError(f"{len(class_names)} class names for a model with {probs.shape[1]} classes")

    img_trig = (x_trig.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    dname = {"cfn": "CFN", "batchstat": "batch stats", "none": "own BN"}[defense]
    columns = [("Input + trigger", None), ("Orig. model (BN)", "original_bn"),
               ("(a) Man. model (BN)", "attacked_bn"), (f"(b) Man. model ({dname})", "attacked_defended")]
    fig, axes = plt.subplots(n, len(columns), figsize=(2.0 * len(columns), 2.3 * n + 0.7),
                             squeeze=False)
    for i in range(n):
        for j, (head, panel) in enumerate(columns):
            ax = axes[i, j]
            if panel is None:
                ax.imshow(img_trig[i], interpolation="nearest")
                label = int(y[i])
                name = class_names[label] if 0 <= label < len(class_names) else str(label)
                ax.set_xlabel(f"label: {name}", fontsize=7)
            else:
                act, probs = out[panel]
                m = act[i].mean(0)
                lim = float(np.abs(m).max()) or 1.0
                im = ax.imshow(m, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
                ax.set_xlabel(_top_k_title(probs[i], class_names), fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(head, fontsize=8)
    fig.suptitle(title or f"Channel mean of {layer} (triggered inputs)", fontsize=9)
    fig.tight_layout()
    if paths:
        save_figure(fig, list(paths))
    else:
        plt.close(fig)
    result = {k: {"act": v[0], "probs": v[1]} for k, v in out.items()}
    result["x_triggered"] = img_trig
    return result
