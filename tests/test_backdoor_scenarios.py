"""Attack scenarios C1, C3 and C5 of the CFN paper (Section 6, Tables 6 and 7) in
:func:`xaisec.attacks.backdoor.finetune`."""
import numpy as np
import pytest
import torch
from torch import nn
from xaisec import io
from xaisec.attacks.backdoor import FinetuneConfig, _fingerprint, finetune
from xaisec.models.classifiers import build_model


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def _data(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    y = (np.arange(n) % 3).astype(np.int64)
    return x, y


def _model():
    """A random ResNet-20 whose BatchNorm layers hold non-trivial statistics and affine."""
    torch.manual_seed(0)
    m = build_model(arch="resnet20", num_classes=3)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
                mod.weight.copy_(0.8 + 0.4 * torch.rand(c, generator=g))
                mod.bias.copy_(0.1 * torch.randn(c, generator=g))
                mod.num_batches_tracked.fill_(100)
    return m.eval()


def _cfg(**kw):
    return FinetuneConfig(**{"attack": "rh", "explainer": "gradcam", "lam": 0.5, "lr": 1e-3,
                             "epochs": 1, "batch_size": 8, "val_subset": 8,
                             "ref_batch_size": 16, **kw})


def _split(state, model):
    bn = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    is_bn = {k: k.rpartition(".")[0] in bn for k in state}
    return ({k: v for k, v in state.items() if is_bn[k]},
            {k: v for k, v in state.items() if not is_bn[k]})


def _run(tmp_path, **kw):
    original = _model()
    before = {k: v.clone() for k, v in original.state_dict().items()}
    x, y = _data()
    info = finetune(original, x, y, x, y, _cfg(**kw), tmp_path, seed=0, progress=False)
    loaded, meta = io.load_model(tmp_path / "model.pt")
    assert isinstance(loaded.bn1, nn.BatchNorm2d)  # a normal BN model of the same architecture
    for k, v in original.state_dict().items():  # the original is left untouched
        assert torch.equal(v, before[k]), k
    bn_before, core_before = _split(before, original)
    bn_after, core_after = _split(loaded.state_dict(), loaded)
    assert bn_before.keys() == bn_after.keys() and core_before.keys() == core_after.keys()
    return info, meta, bn_before, bn_after, core_before, core_after


def _conv_weights_changed(core_before, core_after):
    convs = [k for k in core_before if k.endswith(".weight")]
    assert convs
    assert all(not torch.equal(core_before[k], core_after[k]) for k in convs)


def test_core_freezes_batchnorm_affine_and_running_stats(tmp_path):
    info, meta, bn_b, bn_a, core_b, core_a = _run(tmp_path, trainable="core")
    for k in bn_b:
        assert torch.equal(bn_b[k], bn_a[k]), k  # bit-identical, incl. num_batches_tracked
    _conv_weights_changed(core_b, core_a)
    assert meta["finetune"]["trainable"] == "core" and meta["finetune"]["norm"] == "bn"
    assert meta["scenario"] == "C3" and info["scenario"] == "C3"


def test_cfn_finetuning_saves_a_bn_model_with_the_original_bn(tmp_path):
    info, meta, bn_b, bn_a, core_b, core_a = _run(tmp_path, norm="cfn")
    for k in bn_b:
        assert torch.equal(bn_b[k], bn_a[k]), k
    _conv_weights_changed(core_b, core_a)
    assert meta["finetune"]["norm"] == "cfn" and meta["scenario"] == "C5"
    assert {"saved_val_clean_acc", "saved_val_asr", "val_clean_acc"} <= set(info)


def test_default_config_trains_everything(tmp_path):
    cfg = FinetuneConfig()
    assert (cfg.trainable, cfg.norm, cfg.scenario()) == ("all", "bn", "C1")
    info, meta, bn_b, bn_a, core_b, core_a = _run(tmp_path)
    # C1: BatchNorm affine parameters are optimised and running statistics updated
    for suffix in (".weight", ".bias", ".running_mean", ".running_var"):
        keys = [k for k in bn_b if k.endswith(suffix)]
        assert keys and all(not torch.equal(bn_b[k], bn_a[k]) for k in keys), suffix
    _conv_weights_changed(core_b, core_a)
    assert meta["finetune"]["trainable"] == "all" and meta["scenario"] == "C1"
    assert not any(k.startswith("saved_val_") for k in info)


def test_default_fingerprint_ignores_the_new_fields():
    """Runs (and resume files) made before the scenario fields existed keep their hash."""
    import hashlib
    import json
    from dataclasses import asdict

    model, cfg = _model(), FinetuneConfig()
    d = asdict(cfg)
    del d["trainable"], d["norm"]
    h = hashlib.sha256(json.dumps({**d, "seed": 0, "n": 16}, sort_keys=True).encode())
    for t in model.state_dict().values():
        h.update(t.detach().cpu().numpy().tobytes()[:64])
    assert _fingerprint(cfg, 0, model, 16) == h.hexdigest()[:16]
    assert _fingerprint(FinetuneConfig(trainable="core"), 0, model, 16) != h.hexdigest()[:16]
    assert _fingerprint(FinetuneConfig(norm="cfn"), 0, model, 16) != h.hexdigest()[:16]


def test_bad_scenario_fields():
    with pytest.raises(ValueError, match="trainable"):
        FinetuneConfig(trainable="bn")
    with pytest.raises(ValueError, match="norm"):
        FinetuneConfig(norm="ln")


def test_cfn_needs_batchnorm(tmp_path):
    model = build_model(arch="resnet20", num_classes=3, variant="nobn").eval()
    x, y = _data()
    with pytest.raises(ValueError, match="norm='cfn'"):
        finetune(model, x, y, x, y, _cfg(norm="cfn"), tmp_path, seed=0, progress=False)
