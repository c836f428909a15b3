"""Batched vs per-item data pipeline (not a test): crops/s of VectorPOSE's `prepare` against the batched path.

Per-item: `PretextDataset[i]` (= `method.prepare`: grid-sample crop, Scharr edges, VP targets, TorchIO Models
Genesis corruption), one item at a time. Batched: `BatchedPretextDataset[i]` (= `prepare_raw`: view and parameters,
patch cut) for a batch, `collate`, then `method.prepare_batch` on the whole batch (views, edges, corruption) on the
chosen device. Both in this process with the same number of torch threads, interleaved `--reps` times, on the same
items (same dataset seed); reported: crops/s of each (median over reps) and their ratio (target >= 5 at the paper's
96^3 crops). Process CPU time is reported too (steadier on a shared machine).
Run:  python benchmarks/bench_batched.py [--crop 96] [--batch 12] [--reps 3] [--device cpu] [--method vectorpose]
"""
import argparse, statistics, time
import torch
from ssl3d.data import preprocessing
from ssl3d.phantoms import make_phantom
from ssl3d.methods.core import build_method, PretextDataset, BatchedPretextDataset, RAW_KEY
from ssl3d.patches import collate
import ssl3d.methods.vectorpose, ssl3d.methods.models_genesis  # register


def timed(f):
    w, c = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - w, time.process_time() - c


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--method', default='vectorpose')
    p.add_argument('--crop', type=int, default=96, help='crop edge (paper: 96)')
    p.add_argument('--batch', type=int, default=12, help='items per batch (paper: 12)')
    p.add_argument('--reps', type=int, default=3)
    p.add_argument('--shape', type=int, nargs=3, default=[160, 160, 128], help='phantom shape (before the body crop)')
    p.add_argument('--device', default='cpu')
    a = p.parse_args()
    m = build_method(a.method, dict(backbone='tiny', crop_size=a.crop), preset='paper')  # paper corruption settings
    subjects = [preprocessing('ct')(make_phantom('abdomen', seed=s, shape=tuple(a.shape))) for s in range(2)]
    ref_ds = PretextDataset(subjects, m, samples_per_volume=64, seed=0)
    raw_ds = BatchedPretextDataset(subjects, m, samples_per_volume=64, seed=0)
    dev = torch.device(a.device)
    print(f"{a.method} paper corruption, crop {a.crop}^3, batch {a.batch}, device {dev}, torch threads {torch.get_num_threads()}")
    ref_ds[0]; raw_ds[0]  # warm-up (body masks)

    def per_item(idx): return collate([ref_ds[i] for i in idx])

    def batched(idx):
        raw = collate([raw_ds[i] for i in idx])
        raw = {k: v.to(dev) for k, v in raw.items() if k != RAW_KEY}
        out = m.prepare_batch(raw)
        if dev.type == 'cuda': torch.cuda.synchronize()
        return out

    res = {'per-item': [], 'batched': []}
    for r in range(a.reps):
        idx = list(range(r * a.batch, (r + 1) * a.batch))
        for name, f in (('per-item', per_item), ('batched', batched)):
            _, w, c = timed(lambda: f(idx))
            res[name].append((a.batch / w, a.batch / c))
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in res.items()}
    for k, (w, c) in med.items(): print(f"{k:9s}: {w:7.2f} crops/s wall, {c:7.2f} crops/s CPU")
    print(f"ratio batched/per-item: {med['batched'][0] / med['per-item'][0]:.2f}x wall, "
          f"{med['batched'][1] / med['per-item'][1]:.2f}x CPU (target >= 5)")


if __name__ == '__main__':
    main()
