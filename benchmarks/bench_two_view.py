"""Per-step cost of the two-view methods (PGL, BYOL, MoCo v2) against a bare two-view pass of the same encoder.

For each method (built from a preset, `cpu-small` by default) one full training step is timed: the method's
forward on a batch of two random views per item (with real PGL geometries, so FlipAlign + CSAlign run), backward,
an AdamW step and `after_step` (EMA update, MoCo enqueue). The baseline is the same encoder alone: forward of
view 1 and view 2, `loss = mean(C5₁) + mean(C5₂)`, backward and an AdamW step — what any two-view method must
pay at least. Prints milliseconds per step (median of `--steps` rounds after one warm-up step; each round runs
every variant once, so load changes on a shared machine hit all of them alike) and the ratio to the baseline.
Not a test; run it by hand:

    python benchmarks/bench_two_view.py --steps 5 [--preset cpu-small] [--batch 4] [--device cpu]
"""
import argparse, statistics, time
import numpy as np
import torch
from ssl3d.core import pick_device
from ssl3d.geometry import sample_view_pair
from ssl3d.methods.core import build_method
import ssl3d.methods.pgl, ssl3d.methods.moco  # noqa: F401  (register the methods)


def make_batch(cfg, batch, device, seed=0):
    "Random views of the configured size with geometries of real PGL view pairs on a 2× larger volume."
    rng = np.random.default_rng(seed)
    size = tuple(cfg.input_size)
    pairs = [sample_view_pair(tuple(2 * s for s in size), size, rng) for _ in range(batch)]
    return {'view1': torch.randn(batch, cfg.in_channels, *size, device=device),
            'view2': torch.randn(batch, cfg.in_channels, *size, device=device),
            'geom1': torch.stack([a.to_tensor() for a, _ in pairs]).to(device),
            'geom2': torch.stack([b.to_tensor() for _, b in pairs]).to(device)}


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def time_interleaved(steps, n, device):
    "Median ms per step of each stepper; one warm-up each, then `n` rounds that run every stepper once (load drift hits all alike)."
    for f in steps.values(): f(); sync(device)
    ts = {k: [] for k in steps}
    for _ in range(n):
        for k, f in steps.items():
            t = time.perf_counter(); f(); sync(device); ts[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1000 for k, v in ts.items()}


def method_step(m, batch, total=1000):
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    state = {'k': 0}
    def step():
        out = m(batch); opt.zero_grad(set_to_none=True); out['loss'].backward(); opt.step()
        state['k'] += 1; m.after_step(state['k'], total)
    return step


def bare_step(encoder, batch):
    opt = torch.optim.AdamW(encoder.parameters(), lr=1e-4)
    def step():
        loss = encoder(batch['view1'])[-1].mean() + encoder(batch['view2'])[-1].mean()
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step


def bench_parser(doc:str, batch:int) -> argparse.ArgumentParser:
    "The options every step benchmark shares (preset, batch, interleaved rounds, device, seed)."
    ap = argparse.ArgumentParser(description=doc.split('\n')[0])
    ap.add_argument('--preset', default='cpu-small')
    ap.add_argument('--batch', type=int, default=batch)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--device', default='auto')
    ap.add_argument('--seed', type=int, default=0)
    return ap


def main(argv=None):
    a = bench_parser(__doc__, batch=4).parse_args(argv)
    device = pick_device(a.device)
    torch.manual_seed(a.seed)
    ref = build_method('pgl', preset=a.preset).to(device).train()
    batch = make_batch(ref.config, a.batch, device, a.seed)
    steps = {'bare two-view encoder fwd/bwd': bare_step(ref.encoder, batch)}
    for name in ('pgl', 'byol', 'moco'):
        torch.manual_seed(a.seed)
        steps[name] = method_step(build_method(name, preset=a.preset).to(device).train(), batch)
    ms = time_interleaved(steps, a.steps, device)
    base = ms['bare two-view encoder fwd/bwd']
    c = ref.config
    print(f"preset={a.preset} device={device} batch={a.batch} input={tuple(c.input_size)} backbone={c.backbone} "
          f"threads={torch.get_num_threads()} steps={a.steps} rounds (median after 1 warm-up)")
    print(f"{'step':32s} {'ms/step':>9s} {'× bare':>7s}")
    for n, t in ms.items(): print(f"{n:32s} {t:9.1f} {t / base:7.2f}")


if __name__ == '__main__':
    main()
