"""The explainer family as one: registry, result object, config adapter, the shared batched
loop, and LIME's shared forward batches against Captum's Lime on one image at a time."""
import pytest
import torch
from conftest import randomise_bn
from torch import nn

from xaisec.explainers import (
    EXPLAINERS,
    Explainer,
    Explanation,
    Lime,
    explain_batches,
    explainer_from_settings,
    explainer_kwargs,
    iter_explanations,
    make_explainer,
    register,
    slic_segments,
)
from xaisec.models.classifiers import build_model

N = 5
pytestmark = pytest.mark.usefixtures("one_thread")

#: small settings for the methods that expand the batch
FAST = {"ig": {"n_steps": 6}, "deepliftshap": {"n_baselines": 3},
        "smoothgrad": {"nt_samples": 3}, "lime": {"n_samples": 40, "perturbations_per_eval": 16}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomise_bn(build_model(arch="resnet20", num_classes=10)).eval()


@pytest.fixture(scope="module")
def rts_saliency(model):
    """A (briefly) trained RTS saliency model: RTS explains only with a trained decoder."""
    from xaisec.explainers.rts import SaliencyModel, train_rts

    torch.manual_seed(0)
    sal = SaliencyModel(model, 10)
    train_rts(sal, torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,)),
              phases=[{"iterations": 2, "batch_size": 8, "fake_prob": 0.5}])
    return sal.eval()


def kwargs_of(name, request) -> dict:
    """Small settings per method (the RTS one needs its trained model)."""
    if name == "rts":
        return {"saliency": request.getfixturevalue("rts_saliency")}
    if name == "mask":
        return {"mask_size": 4, "iterations": 5, "blur_kernel": 3, "blur_sigma": 1.0}
    return FAST.get(name, {})


@pytest.fixture
def x():
    """Images with structure (SLIC needs some)."""
    low = torch.rand(N, 3, 4, 4)
    up = nn.functional.interpolate(low, size=32, mode="bilinear", align_corners=False)
    return (up + 0.05 * torch.rand(N, 3, 32, 32)).clamp(0, 1)


def test_registry_holds_every_method():
    assert set(EXPLAINERS) == {"grad", "gradcam", "relevancecam", "cam", "saliency", "ig",
                               "deepliftshap", "smoothgrad", "lime", "adv2grad", "mask", "rts"}
    for name, cls in EXPLAINERS.items():
        assert issubclass(cls, Explainer) and cls.name == name
    assert {n for n, c in EXPLAINERS.items() if c.differentiable} == {
        "grad", "gradcam", "relevancecam", "cam", "adv2grad", "rts"}


def test_unknown_name_lists_every_method(model):
    with pytest.raises(ValueError, match="grad, gradcam, relevancecam, cam, saliency, ig"):
        make_explainer("nope", model)


def test_a_registered_method_is_found(model, x):
    class Ones(Explainer):
        """A toy method: a map of ones, logits of one forward pass."""

        name = "ones_test"

        def __init__(self, model, value: float = 1.0):
            super().__init__(model)
            self.value = value

        def _attribute(self, x, target, create_graph):
            from xaisec.explainers import resolve_target

            logits = self.model(x)
            return Explanation(torch.full_like(x[:, :1], self.value), logits,
                               resolve_target(target, logits))

    try:
        assert register(Ones) is Ones
        expl = make_explainer("ones_test", model, value=2.0)
        assert isinstance(expl, Ones)
        res = expl.attribute(x)
        assert torch.equal(res.maps, torch.full((N, 1, 32, 32), 2.0))
        assert not res.maps.requires_grad and not res.logits.requires_grad
        res = explain_batches(expl, x, batch_size=2)
        assert res.maps.shape == (N, 1, 32, 32)
        with pytest.raises(ValueError, match="taken"):
            register(type("Other", (Ones,), {}), name="ones_test")
        with pytest.raises(TypeError):
            register(object)
    finally:
        EXPLAINERS.pop("ones_test", None)


@pytest.mark.parametrize("name", list(EXPLAINERS))
def test_result_carries_the_logits_of_the_model(name, model, x, request):
    expl = make_explainer(name, model, **kwargs_of(name, request))
    res = expl.attribute(x)
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(res.logits, logits)
    assert torch.equal(res.target, logits.argmax(1))
    torch.testing.assert_close(res.probs, torch.softmax(logits, 1))
    assert torch.equal(res.pred, res.probs.argmax(1))
    torch.testing.assert_close(res.confidence, res.probs.amax(1))
    assert res.maps.shape[0] == N and len(res) == N
    assert not hasattr(expl, "last_logits") and not hasattr(expl, "last_mask")
    # a given target is the explained class
    res = expl.attribute(x, target=3)
    assert res.target.tolist() == [3] * N


@pytest.mark.parametrize("name", [n for n, c in EXPLAINERS.items() if c.batch_independent])
def test_loop_equals_one_call(name, model, x, request):
    """For batch-independent explainers (model in eval mode), the shared loop in batches of 2
    gives the maps of one call on the whole batch."""
    expl = make_explainer(name, model, **kwargs_of(name, request))
    whole = expl.attribute(x)
    t = torch.tensor([1, 0, 9, 4, 2])
    for batched in (explain_batches(expl, x, batch_size=2),
                    explain_batches(expl, (x[i:i + 2] for i in range(0, N, 2)))):
        torch.testing.assert_close(batched.maps, whole.maps, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(batched.logits, whole.logits, rtol=1e-4, atol=1e-6)
        assert torch.equal(batched.target, whole.target)
    given = explain_batches(expl, x, t, batch_size=3)
    assert torch.equal(given.target, t)
    torch.testing.assert_close(given.maps, expl.attribute(x, target=t).maps, rtol=1e-4, atol=1e-6)


def test_loop_devices_progress_and_targets(model, x):
    expl = make_explainer("gradcam", model)
    parts = list(iter_explanations(expl, x, batch_size=2, device="cpu", out_device="cpu",
                                   progress=True))
    assert [len(p) for p in parts] == [2, 2, 1]
    with pytest.raises(ValueError, match="target has"):
        explain_batches(expl, x, torch.zeros(N + 1, dtype=torch.long), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        explain_batches(expl, x, batch_size=0)


def test_lime_extras_concatenate_in_the_loop(model, x):
    expl = make_explainer("lime", model, **FAST["lime"])
    res = explain_batches(expl, x, batch_size=2)
    assert res.extra["mask"].shape == (N, 32, 32) and res.extra["segments"].shape == (N, 1, 32, 32)
    assert len(res.extra["weights"]) == N
    # seeds follow the position in the call: the first call's images match
    torch.testing.assert_close(res.maps[:2], expl(x[:2]))


def test_config_adapter():
    model = build_model(arch="resnet20", num_classes=10)
    assert explainer_kwargs("relevancecam", None) == {"weighting": "spatial"}
    assert explainer_kwargs("relevancecam", {"relevancecam_weighting": "channel"}) == {
        "weighting": "channel"}
    assert explainer_kwargs("gradcam", {"relevancecam_weighting": "channel"}) == {}
    fgsmxai = {"gradcam_layer": None, "batch_size": 64,
               "smoothgrad": {"nt_samples": 20, "stdevs": 0.1, "seed": 0,
                              "nt_samples_batch_size": None},
               "lime": {"n_samples": 1000, "num_features": 5, "n_segments": 50,
                        "baseline": "segment_mean", "perturbations_per_eval": 250,
                        "images_per_call": 16, "seed": 0}}
    assert explainer_kwargs("gradcam", fgsmxai, model) == {"layer": "layer3"}
    assert explainer_kwargs("gradcam", {**fgsmxai, "gradcam_layer": "layer2"}, model) == {
        "layer": "layer2"}
    assert explainer_kwargs("smoothgrad", fgsmxai) == fgsmxai["smoothgrad"]
    lime = explainer_kwargs("lime", fgsmxai)
    assert "images_per_call" not in lime and lime["perturbations_per_eval"] == 250
    exiaa = {"batch_size": 256, "ig": {"n_steps": 50, "internal_batch_size": None},
             "deepliftshap": {"n_baselines": 10, "seed": 0, "batch_size": 16}}
    assert explainer_kwargs("saliency", exiaa) == {}
    assert explainer_kwargs("ig", exiaa) == exiaa["ig"]
    assert explainer_kwargs("deepliftshap", exiaa) == exiaa["deepliftshap"]
    e = explainer_from_settings("lime", model, fgsmxai, seed=3)
    assert isinstance(e, Lime) and e.seed == 3 and e.baseline == "segment_mean"
    with pytest.raises(ValueError, match="unknown explainer"):
        explainer_kwargs("nope", {})


def _captum_lime_one_at_a_time(model, x, t, expl):
    """Captum's Lime on one image per call with the wrapper's settings and seeds (the
    implementation before the perturbed samples of several images shared forward batches)."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime as CLime

    seg = slic_segments(x, expl.n_segments, expl.compactness)
    maps, weights = [], []
    for i in range(x.shape[0]):
        xi = x[i: i + 1]
        lime = CLime(model, interpretable_model=SkLearnRidge(alpha=expl.alpha),
                     similarity_func=expl._similarity)
        with torch.random.fork_rng():
            torch.manual_seed(expl.seed + i)
            w = lime.attribute(xi, baselines=expl._baseline(xi, seg[i, 0]), target=t[i: i + 1],
                               feature_mask=seg[i: i + 1].expand_as(xi),
                               n_samples=expl.n_samples,
                               perturbations_per_eval=expl.perturbations_per_eval,
                               return_input_shape=False)
        w = w.reshape(-1)
        weights.append(w)
        maps.append(w[seg[i: i + 1]].expand_as(xi))
    return torch.cat(maps), weights


@pytest.mark.parametrize("baseline, ppe", [("mean", 16), ("segment_mean", 7), ("zeros", 200)])
def test_batched_lime_equals_captum_one_image_at_a_time(baseline, ppe, model, x):
    """The perturbed samples of all images share forward batches (of ``ppe`` images, across
    image boundaries), yet every image's draws, model outputs and surrogate are Captum's."""
    expl = Lime(model, n_samples=50, perturbations_per_eval=ppe, baseline=baseline, seed=4)
    res = expl.attribute(x)
    ref, w_ref = _captum_lime_one_at_a_time(model, x, res.target, expl)
    torch.testing.assert_close(res.maps, ref, rtol=1e-4, atol=1e-6)
    for w, wr in zip(res.extra["weights"], w_ref):
        torch.testing.assert_close(w, wr, rtol=1e-4, atol=1e-6)
    # and per image, one call each (seed + position in the call)
    for i in range(N):
        one = Lime(model, n_samples=50, perturbations_per_eval=ppe, baseline=baseline,
                   seed=4 + i)(x[i: i + 1])
        torch.testing.assert_close(res.maps[i: i + 1], one, rtol=1e-4, atol=1e-6)


def test_lime_similarity_table_equals_per_sample(model):
    expl = Lime(model, kernel_width=0.3)
    z = torch.bernoulli(torch.full((200, 23), 0.5)).long()
    per_sample = torch.stack([expl._similarity(None, None, z[i: i + 1]) for i in range(200)])
    assert torch.equal(expl._similarities(z), per_sample)
