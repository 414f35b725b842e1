"""Benchmarks (``make bench``): throughput numbers, printed and written to
results/benchmarks/*.json. Nothing here asserts a speed."""
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xaisec.io import write_json
from xaisec.models.classifiers import build_model
from xaisec.tensors import nhwc_to_tensor
from xaisec.train import TrainConfig, _optimizer, train_epoch

OUT = Path(__file__).resolve().parents[1] / "results" / "benchmarks"
N, BATCH, REPEAT = 2560, 128, 3


def _data():
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (N, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, 10, N).astype(np.int64))


def _best(fn):
    times = []
    for _ in range(REPEAT):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return N / min(times)


@pytest.mark.bench
def test_training_throughput_vs_bare_pytorch():
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    x_np, y_np = _data()
    x, y = nhwc_to_tensor(x_np), torch.as_tensor(y_np)
    cfg = TrainConfig(epochs=1, batch_size=BATCH)
    results = {}

    torch.manual_seed(0)
    model = build_model(arch="resnet20").to(device)
    opt, sched = _optimizer(model, cfg, N // BATCH)
    gen = torch.Generator().manual_seed(0)
    train_epoch(model, opt, sched, x[:BATCH], y[:BATCH], cfg, gen, device, progress=False)  # warm-up
    results["xaisec train_epoch (crop+flip on batch tensors)"] = _best(
        lambda: train_epoch(model, opt, sched, x, y, cfg, gen, device, progress=False))

    # bare loop: pre-made float batches, no augmentation, the same model and optimiser
    torch.manual_seed(0)
    model = build_model(arch="resnet20").to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    xf = (x.float() / 255).to(device)
    yd = y.to(device)

    def bare():
        for i in range(0, N, BATCH):
            loss = F.cross_entropy(model(xf[i:i + BATCH]), yd[i:i + BATCH])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    results["bare PyTorch loop (no augmentation)"] = _best(bare)

    # the usual torchvision pipeline: per-sample transforms in a DataLoader
    from torchvision import transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.RandomCrop(32, padding=4),
                             transforms.RandomHorizontalFlip()])

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return N

        def __getitem__(self, i):
            return tf(x_np[i]), int(y_np[i])

    loader = torch.utils.data.DataLoader(DS(), batch_size=BATCH, shuffle=True, num_workers=0)

    def torchvision_loop():
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb.to(device)), yb.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    results["torchvision DataLoader loop (per-sample crop+flip)"] = _best(torchvision_loop)

    base = results["bare PyTorch loop (no augmentation)"]
    print(f"\nResNet-20 training throughput, batch {BATCH}, {N} images, device {device}, "
          f"{torch.get_num_threads()} threads (best of {REPEAT}):")
    for k, v in results.items():
        print(f"  {k:55s} {v:8.0f} images/s  ({100 * (v / base - 1):+.1f}% vs bare)")
    write_json(OUT / "training_throughput.json",
               {"device": str(device), "threads": torch.get_num_threads(), "images": N,
                "batch_size": BATCH, "images_per_s": results})


@pytest.mark.bench
def test_finetune_step_vs_plain_step_and_cache_vs_recompute(tmp_path):
    """One backdoor fine-tuning step per explainer (second-order, Softplus) against one plain
    training step; reading the Parquet cache against recomputing the explanations."""
    from xaisec.attacks.trigger import target_explanation
    from xaisec.metrics.maps import zscore_channelmax
    from xaisec.cache import ExplanationSet, read_explanations, write_explanations
    from xaisec.explainers import make_explainer
    from xaisec.models.classifiers import set_activation

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    x = torch.rand(32, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (32,), device=device)
    res = {}

    model = build_model(arch="resnet20").to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def plain():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def timeit(fn, reps=5):
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / reps

    res["plain training step"] = timeit(plain)
    set_activation(model, "softplus", 8.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for name in ("grad", "gradcam", "relevancecam"):
        expl = make_explainer(name, model)
        target = zscore_channelmax(target_explanation("square", name)).to(device)

        def step():
            r = expl.attribute(x, create_graph=True)
            maps = r.maps
            loss = 0.9 * F.mse_loss(zscore_channelmax(maps), target.expand(32, -1, -1, -1)) \
                + 0.1 * F.cross_entropy(r.logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        res[f"fine-tuning step ({name})"] = timeit(step)
    print(f"\nbatch 32, device {device}, {torch.get_num_threads()} threads:")
    for k, v in res.items():
        print(f"  {k:35s} {1000 * v:8.1f} ms  ({v / res['plain training step']:.1f}x plain)")

    # cache: write + read 2,000 Grad-CAM maps vs recomputing them
    set_activation(model, "relu")
    model.eval()
    xs = torch.rand(2000, 3, 32, 32)
    expl = make_explainer("gradcam", model)

    def recompute():
        return torch.cat([expl(xs[i:i + 100].to(device)).cpu() for i in range(0, 2000, 100)])

    t = time.perf_counter()
    maps = recompute().numpy()
    t_recompute = time.perf_counter() - t
    n = len(maps)
    es = ExplanationSet(maps=maps, sample=np.arange(n), label=np.zeros(n, np.int64),
                        pred=np.zeros(n, np.int64), confidence=np.ones(n, np.float32),
                        target=np.zeros(n, np.int64), meta={"bench": True})
    t = time.perf_counter()
    write_explanations(tmp_path / "c.parquet", es)
    t_write = time.perf_counter() - t
    t = time.perf_counter()
    read_explanations(tmp_path / "c.parquet")
    t_read = time.perf_counter() - t
    cache = {"recompute_maps_per_s": n / t_recompute, "write_maps_per_s": n / t_write,
             "read_maps_per_s": n / t_read}
    for k, v in cache.items():
        print(f"  Grad-CAM maps, {k:25s} {v:10.0f}")
    write_json(OUT / "finetune_step_and_cache.json",
               {"device": str(device), "threads": torch.get_num_threads(),
                "step_seconds": res, "cache": cache})
