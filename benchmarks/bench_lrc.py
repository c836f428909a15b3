"""LRC's costs, measured side by side in one run (ratios, not tests).

1. Elastic warp of a 128³ volume with its region map: `ssl3d.elastic.RandomElasticWarp` (torch B-spline +
   grid_sample) vs TorchIO's `RandomElasticDeformation` (SimpleITK) at equal settings (7 control points per
   axis, 7.5 mm, 2 locked borders), on the same TorchIO subject (a ScalarImage and a LabelMap).
2. Region proposals on a 128³ phantom: per-slice 2D Felzenszwalb (`'slicewise'`, the paper's) vs 3D SLIC
   supervoxels (`'slic3d'`): seconds, regions, regions per second.
3. One LRC training step (forward, backward, AdamW step, `after_step`) vs one step of its global branch alone
   (MoCo v2, BYOL, SimSiam; the same config) on the same phantom batch, `cpu-small` presets (optionally with the
   paper's ResNet-50), batch 4, with the 1×1×1 and the 3×3×3 feature convolution.

Each timing is the median of `--rounds` rounds after a warm-up, every variant once per round (load changes on a
shared machine hit all alike). Run by hand:

    python benchmarks/bench_lrc.py [--rounds 3] [--device cpu] [--skip-elastic] [--skip-regions] [--skip-step]
                                   [--backbone tiny|paper] [--batch 4] [--globals moco,byol,simsiam]
"""
import argparse, sys, time
from pathlib import Path
import numpy as np
import torch
import torchio as tio
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_two_view import time_interleaved, method_step  # noqa: E402  (the shared timing helpers)
from ssl3d.core import pick_device
from ssl3d.elastic import RandomElasticWarp
from ssl3d.regions import RegionConfig, propose_regions
from ssl3d.phantoms import make_phantom
from ssl3d.data import preprocessing
from ssl3d.methods.core import build_method, PretextDataset, METHODS
from ssl3d.patches import collate
from ssl3d.methods.lrc import _branch_config
import ssl3d.methods.lrc  # noqa: F401


def phantom_volume(n=128):
    "A 128³ phantom windowed to [0, 1] (−160…240 HU, LRC-A15), 1.5 mm voxels."
    s = make_phantom(seed=0, shape=(n, n, n))
    x = ((s['image'].data.float() + 160) / 400).clamp(0, 1)
    return tio.Subject(image=tio.ScalarImage(tensor=x, affine=np.diag([1.5, 1.5, 1.5, 1.0])))


def bench_elastic(subj, rounds):
    x = subj['image'].data
    regions = propose_regions(x[0], RegionConfig())
    s = tio.Subject(image=tio.ScalarImage(tensor=x, affine=subj['image'].affine),
                    regions=tio.LabelMap(tensor=torch.from_numpy(regions)[None].int(), affine=subj['image'].affine))
    kw = dict(num_control_points=7, max_displacement=7.5, locked_borders=2)
    t = time_interleaved({'torchio': lambda: tio.RandomElasticDeformation(**kw)(s),
                          'ssl3d': lambda: RandomElasticWarp(**kw)(s)}, rounds, torch.device('cpu'))
    print(f"\n1. elastic warp, {tuple(x.shape[1:])} image + region map, 7 control points, 7.5 mm, 2 locked borders")
    print(f"   TorchIO RandomElasticDeformation {t['torchio']:8.0f} ms")
    print(f"   ssl3d RandomElasticWarp          {t['ssl3d']:8.0f} ms   -> {t['torchio'] / t['ssl3d']:.1f}x faster")


def bench_regions(subj, rounds):
    x = subj['image'].data[0].numpy()
    out = {}
    for method in ('slicewise', 'slic3d'):
        ts = []
        for _ in range(rounds):
            t = time.perf_counter(); lab = propose_regions(x, RegionConfig(method=method)); ts.append(time.perf_counter() - t)
        out[method] = (float(np.median(ts)), int(lab.max()) + 1)
    print(f"\n2. region proposals on a {x.shape} phantom (default parameters)")
    for m, (s, k) in out.items():
        print(f"   {m:9s} {s:6.2f} s  {k:6d} regions  {k / s:8.0f} regions/s  {x.size / s / 1e6:5.2f} Mvoxel/s")
    (s2, k2), (s3, k3) = out['slicewise'], out['slic3d']
    print(f"   slic3d / slicewise: time {s3 / s2:.2f}x, regions/s {(k3 / s3) / (k2 / s2):.2f}x")


def bench_step(rounds, device, batch=4, backbone='tiny', globals_=('moco', 'byol', 'simsiam')):
    prep = preprocessing('ct', hu_range=(-160, 240))
    subjects = [prep(make_phantom(seed=s, shape=(96, 96, 48))) for s in range(4)]
    print(f"\n3. one training step, cpu-small presets with backbone {backbone!r} (64×64×16 views), batch {batch}, device {device}")
    print(f"   {'global':8s} {'alone ms':>9s} {'+LRC k=1 ms':>11s} {'ratio':>6s}   {'+LRC k=3 ms':>11s} {'ratio':>6s}")
    for g in globals_:
        torch.manual_seed(0)
        lrc = build_method('lrc', {'global_method': g, 'backbone': backbone, 'feature_kernel': 3}, preset='cpu-small').to(device)
        lrc1 = build_method('lrc', {'global_method': g, 'backbone': backbone, 'feature_kernel': 1}, preset='cpu-small').to(device)
        alone = METHODS.get(g)(_branch_config(lrc.config)).to(device)
        ds = PretextDataset(subjects, lrc, samples_per_volume=2, seed=0)
        b = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate([ds[i] for i in range(batch)]).items()}
        t = time_interleaved({'alone': method_step(alone, b), 'lrc': method_step(lrc, b), 'lrc1': method_step(lrc1, b)},
                             rounds, device)
        print(f"   {g:8s} {t['alone']:9.0f} {t['lrc1']:11.0f} {t['lrc1'] / t['alone']:6.2f}   {t['lrc']:11.0f} {t['lrc'] / t['alone']:6.2f}")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--device', default='cpu')
    p.add_argument('--skip-elastic', action='store_true'); p.add_argument('--skip-regions', action='store_true')
    p.add_argument('--skip-step', action='store_true')
    p.add_argument('--backbone', default='tiny', help="step section: build_backbone preset ('tiny' = cpu-small, 'paper' = ResNet-50)")
    p.add_argument('--batch', type=int, default=4); p.add_argument('--globals', default='moco,byol,simsiam')
    a = p.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    if not (a.skip_elastic and a.skip_regions): subj = phantom_volume()
    if not a.skip_elastic: bench_elastic(subj, a.rounds)
    if not a.skip_regions: bench_regions(subj, a.rounds)
    if not a.skip_step: bench_step(a.rounds, pick_device(a.device), a.batch, a.backbone, a.globals.split(','))
