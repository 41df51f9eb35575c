"""Time class-average scoring: seconds per 1,000 classes and peak memory, per mode and batch size.

Usage: python benchmarks/score_speed.py [--classes 1000] [--box 128] [--batch-sizes 1 32 128] [--threads 2]
                                        [--peer-classes 16] [--quick]

Each configuration runs in a fresh process (so its peak RSS is its own) on seeded random weights
and synthetic class averages, through the full scoring path (mass estimate, features,
preprocessing, network, decode):

- published mode: min-max, pad/area-shrink to 210 px (for published CryoSift weights);
- our default mode: Fourier rescale to 64 px, background normalisation, the mean over 8
  rotations and mirrors of each class average (``ours``); ``ours-1view`` scores the image as
  given (checkpoints without the views entry).

The peer is the published implementation's way of running inference, measured in the same run:
numpy preprocessing image by image, then all classes in one batch with autograd left on. It is run
on a few classes only (it needs about 60 MB per class) and extrapolated per 1,000 classes.
Targets on 2 cores: published mode <= 110 s per 1,000 classes and peak RSS <= 1.5 GB; our default
mode >= 10x faster. CUDA figures are added when a GPU is present.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def synthetic_classes(k, box, seed=0):
    from cryosift.io.models import ClassAverages

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:box, :box] - box // 2
    radius = rng.uniform(box / 10, box / 4, k)
    images = np.empty((k, box, box), dtype=np.float32)
    for i in range(k):  # one image at a time: the setup's own peak memory stays small
        images[i] = 0.1 * rng.standard_normal((box, box), dtype=np.float32) + (xx**2 + yy**2 <= radius[i] ** 2)
    counts = rng.integers(0, 5000, k)
    return ClassAverages(images=images, pixel_size=1.5, class_numbers=np.arange(1, k + 1),
                         resolution=rng.uniform(4, 30, k), distribution=counts / counts.sum(), particle_count=counts)


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(mode, batch, k, box, threads, device):
    import torch

    from cryosift.scoring import PUBLISHED_CONFIG, ModelConfig, build_network, score_classes
    from cryosift.scoring.checkpoint import ScoringModel

    torch.set_num_threads(threads)
    classes = synthetic_classes(k, box)
    config = {"published": PUBLISHED_CONFIG, "ours": ModelConfig(views=8), "ours-1view": ModelConfig(views=1)}[mode]
    model = ScoringModel(build_network(seed=0), config).to(device)
    base = rss_mb()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0, c0 = time.perf_counter(), cpu_seconds()
    table = score_classes(classes, model, batch_size=batch, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    out = {"seconds": seconds, "cpu_seconds": cpu_seconds() - c0, "base_rss_mb": base, "peak_rss_mb": rss_mb(),
           "finite": bool(np.isfinite(table.score).all())}
    if device == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(out))


def peer(k, box, threads):
    """The published way: per-image numpy preprocessing, one batch, autograd on."""
    import torch

    from cryosift.scoring import PUBLISHED_CONFIG, build_network, class_features, decode, feature_matrix
    from cryosift.scoring.preprocess import area_matrix

    torch.set_num_threads(threads)
    classes = synthetic_classes(k, box)
    net = build_network(seed=0)
    for m in net.modules():  # the published network's ReLUs are not in place
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    base = rss_mb()
    t0, c0 = time.perf_counter(), cpu_seconds()
    table = class_features(classes)
    feats = feature_matrix(table, PUBLISHED_CONFIG.features)
    imgs = []
    for img in classes.images:
        img = (img - img.min()) / (img.max() - img.min())
        if img.shape[0] > 210:
            a = area_matrix(img.shape[0], 210).numpy()
            img = a @ img @ a.T
        d = 210 - img.shape[0]
        imgs.append(np.pad(img, (d // 2, d - d // 2)))
    x = torch.Tensor(np.array(imgs)).unsqueeze(1)
    pred = net(x, torch.Tensor(feats)).detach().numpy().ravel()  # autograd on, as published
    decode(pred, "published", table["resolution_A"].to_numpy())
    print(json.dumps({"seconds": time.perf_counter() - t0, "cpu_seconds": cpu_seconds() - c0, "base_rss_mb": base,
                      "peak_rss_mb": rss_mb()}))


def run(args_list):
    out = subprocess.run([sys.executable, __file__, *args_list], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--box", type=int, default=128, help="class-average box in px")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peer-classes", type=int, default=16)
    p.add_argument("--quick", action="store_true", help="200 classes instead of --classes")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    p.add_argument("--peer", nargs=3, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        mode, batch, k, box, device = args.child
        return child(mode, int(batch), int(k), int(box), args.threads, device)
    if args.peer:
        return peer(*args.peer)

    import torch

    k = 200 if args.quick else args.classes
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"scoring {k} synthetic {args.box} px class averages, {args.threads} CPU threads "
          f"(torch {torch.__version__}); figures per 1,000 classes; load average {os.getloadavg()[0]:.1f}")
    pr = run(["--peer", str(args.peer_classes), str(args.box), str(args.threads)])
    peer_s = pr["seconds"] / args.peer_classes * 1000
    peer_mb = (pr["peak_rss_mb"] - pr["base_rss_mb"]) / args.peer_classes
    print(f"peer (published-style: one batch, autograd on, {args.peer_classes} classes): {peer_s:8.1f} s/1000 "
          f"(CPU {pr['cpu_seconds'] / args.peer_classes * 1000:.1f} s) {peer_mb:6.1f} MB per class "
          f"(peak RSS {pr['peak_rss_mb']:.0f} MB)")
    best = {}
    for device in devices:
        for mode in ("published", "ours-1view", "ours"):
            for batch in args.batch_sizes:
                r = run(["--threads", str(args.threads), "--child", mode, str(batch), str(k), str(args.box), device])
                per_k = r["seconds"] / k * 1000
                best[(device, mode)] = min(best.get((device, mode), np.inf), per_k)
                extra = f" CUDA peak {r['cuda_peak_mb']:7.0f} MB" if "cuda_peak_mb" in r else ""
                cpu_k = r["cpu_seconds"] / k * 1000
                print(f"{device:4s} {mode:10s} batch {batch:4d}: {per_k:8.2f} s/1000 (CPU {cpu_k:8.2f} s)  "
                      f"peak RSS {r['peak_rss_mb']:6.0f} MB "
                      f"(+{r['peak_rss_mb'] - r['base_rss_mb']:5.0f} MB over setup){extra}")
    for device in devices:
        pub, ours, one = best[(device, "published")], best[(device, "ours")], best[(device, "ours-1view")]
        print(f"{device}: best published {pub:.2f} s/1000 ({peer_s / pub:.1f}x faster than the peer); "
              f"best ours {ours:.2f} s/1000 ({pub / ours:.1f}x faster than published mode, "
              f"{peer_s / ours:.0f}x faster than the peer; 8 views cost {ours / one:.1f}x one view)")


if __name__ == "__main__":
    main()
