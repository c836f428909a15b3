"""VectorPOSE overheads (not a test): (1) loss overhead of one training step, (2) data pipeline vs model speed.

(1) One VectorPOSE training step (forward + `vectorpose_loss` + backward; targets precomputed in the batch) against
    a bare forward/backward of the same encoder, decoder and both heads on the same batch with a trivial loss
    (sum of output means). The two are timed alternately, `--reps` times each; reported: medians, minima and their
    ratios (target <= 1.05; the minimum is the least disturbed by other jobs on a shared machine).
(2) `method.prepare` (view sampling, extraction, VP and edge targets, Models Genesis corruption) in one process,
    crops/s, against the crops/s the model consumes in full training steps (forward, loss, backward, AdamW
    step) at the preset's batch size; ratio = prepare rate / training rate (target >= 2: one DataLoader worker
    keeps the model fed).

Both wall-clock and process CPU time are reported (the machine may be shared; CPU time is the steadier of the two).
Run:  .venv/bin/python benchmarks/bench_vectorpose.py [--preset cpu-small] [--reps 10] [--crops 30] [--set crop_size=64]
"""
import argparse, statistics, tempfile, time
from pathlib import Path
import numpy as np
import torch
from ssl3d.data import preprocessing
from ssl3d.phantoms import make_phantom
from ssl3d.methods.core import build_method, method_config
from ssl3d.patches import collate
from ssl3d.methods.vectorpose import VectorPOSE
from ssl3d.core import parse_assignments
from ssl3d.train import train_config


def timed(f):
    w, c = time.perf_counter(), time.process_time()
    f()
    return time.perf_counter() - w, time.process_time() - c


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--preset', default='cpu-small')
    p.add_argument('--reps', type=int, default=10)
    p.add_argument('--crops', type=int, default=30, help='items made by prepare for (2)')
    p.add_argument('--shape', type=int, nargs=3, default=[96, 96, 64], help='phantom shape (before the body crop)')
    p.add_argument('--set', nargs='*', default=[], help='method field overrides, e.g. crop_size=64')
    a = p.parse_args()
    torch.manual_seed(0)
    m = build_method('vectorpose', parse_assignments(a.set), preset=a.preset)
    bs = train_config(a.preset if a.preset in ('cpu-small', 'paper') else None, **VectorPOSE.TRAIN_PRESETS.get(a.preset, {})).batch_size
    subjects = [preprocessing('ct')(make_phantom('abdomen', seed=s, shape=tuple(a.shape))) for s in range(3)]
    print(f"preset {a.preset}: backbone {m.backbone_kwargs}, crop {m.config.crop_size}^3, batch {bs}, "
          f"torch threads {torch.get_num_threads()}")

    # (2a) prepare throughput (one process = one worker)
    rng = np.random.default_rng(0)
    m.prepare(subjects[0], rng)  # warm-up (caches the body mask of subject 0)
    for s in subjects[1:]: m.prepare(s, rng)
    items, tw, tc = [], 0.0, 0.0
    for i in range(a.crops):
        torch.manual_seed(i)
        w, c = timed(lambda: items.append(m.prepare(subjects[i % len(subjects)], rng)))
        tw += w; tc += c
    prep_wall, prep_cpu = a.crops / tw, a.crops / tc

    # (1) loss overhead: VectorPOSE step vs bare forward/backward with a trivial loss
    batch = collate(items[:bs])
    def vp_step():
        m.zero_grad(set_to_none=True)
        m(batch)['loss'].backward()
    def bare_step():
        m.zero_grad(set_to_none=True)
        vp, rec = m.heads(batch['input'])
        ((vp.mean() if vp is not None else 0) + rec.mean()).backward()
    vp_step(); bare_step()
    tv, tb = [], []
    for _ in range(a.reps):
        tv.append(timed(vp_step)); tb.append(timed(bare_step))
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    low = lambda xs, k: min(x[k] for x in xs)
    print(f"(1) step: VectorPOSE {med(tv, 0):.3f} s wall / {med(tv, 1):.3f} s cpu (median), bare fwd/bwd {med(tb, 0):.3f} / "
          f"{med(tb, 1):.3f}; ratio of medians {med(tv, 0) / med(tb, 0):.3f} (wall), {med(tv, 1) / med(tb, 1):.3f} (cpu); "
          f"ratio of minima {low(tv, 0) / low(tb, 0):.3f} (wall), {low(tv, 1) / low(tb, 1):.3f} (cpu)")

    # (2b) training throughput: full steps with AdamW
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    def train_step():
        opt.zero_grad(set_to_none=True)
        m(batch)['loss'].backward()
        opt.step()
    train_step()
    tt = [timed(train_step) for _ in range(a.reps)]
    train_wall, train_cpu = bs / med(tt, 0), bs / med(tt, 1)
    print(f"(2) prepare {prep_wall:.2f} crops/s wall ({prep_cpu:.2f} cpu); training {train_wall:.2f} crops/s wall "
          f"({train_cpu:.2f} cpu); ratio {prep_wall / train_wall:.2f} (wall), {prep_cpu / train_cpu:.2f} (cpu)")


if __name__ == '__main__':
    main()
