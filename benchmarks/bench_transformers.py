"""Step cost of MAE and Alice against a bare ViT forward/backward on the same batch, and the matchers' errors.

`--steps N` (default): one full training step of each variant on the same random batch of crops (`--preset`,
`cpu-small` by default, crops `--size`): the method's forward, backward, an AdamW step and `after_step` (Alice's EMA).
The baseline is the same ViT encoder alone on all tokens of one crop per item, `loss = mean(last map)`, backward and
an AdamW step. MAE encodes only the visible quarter of the tokens plus a light decoder; Alice runs two masked
students, two teacher passes over intact views, heads and CASA. Prints ms per step (median of the rounds after one
warm-up; each round runs every variant once, so load drift on a shared machine hits all alike) and the ratios.

`--matchers`: the matcher error table of `nbs/15_matchers.ipynb` (organ centroids of A as query centres, mm to the
same organ's centroid in B, over all ordered pairs of `--phantoms` abdomen phantoms); `--vp-checkpoint` adds the
VectorPOSE-head matcher of `ssl3d.methods.alice` for that VectorPOSE `final.pt`.

    python benchmarks/bench_transformers.py --steps 5 [--preset cpu-small] [--size 32 32 16] [--batch 4]
    python benchmarks/bench_transformers.py --matchers [--phantoms 8] [--vp-checkpoint runs/vp/final.pt] [--max-pairs 8]
"""
import argparse, statistics, time
import numpy as np
import torch
from ssl3d.core import pick_device
from ssl3d.methods.core import build_method
import ssl3d.methods.mae, ssl3d.methods.alice  # noqa: F401  (register the methods)


def sync(device):
    if device.type == 'cuda': torch.cuda.synchronize()


def steppers(preset, size, batch, device):
    torch.manual_seed(0)
    over = {'input_size': tuple(size)}
    mae, alice = build_method('mae', over, preset=preset).to(device), build_method('alice', over, preset=preset).to(device)
    vit = build_method('mae', over, preset=preset).encoder.to(device)
    x = torch.rand(batch, 1, *size, device=device)
    b_alice = {'q_masked': x, 'k_masked': x.flip(2), 'q_intact': x.flip(3), 'k_intact': x.flip(4)}
    out = {}
    for name, model, fwd in (('bare ViT fwd+bwd', vit, lambda: vit(x)[-1].mean()),
                             ('MAE step', mae, lambda: mae({'image': x})['loss']),
                             ('Alice step', alice, lambda: alice(b_alice)['loss'])):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        def step(model=model, fwd=fwd, opt=opt):
            opt.zero_grad(set_to_none=True); fwd().backward(); opt.step()
            if hasattr(model, 'after_step'): model.after_step(1, 100)
        out[name] = step
    return out


def bench_steps(a):
    device = pick_device(a.device)
    st = steppers(a.preset, a.size, a.batch, device)
    for f in st.values(): f(); sync(device)
    ts = {k: [] for k in st}
    for _ in range(a.steps):
        for k, f in st.items():
            t0 = time.perf_counter(); f(); sync(device); ts[k].append(time.perf_counter() - t0)
    base = statistics.median(ts['bare ViT fwd+bwd'])
    print(f"preset {a.preset}, crops {tuple(a.size)}, batch {a.batch}, device {device}, median of {a.steps} rounds")
    print(f"{'variant':18} {'ms/step':>9} {'× bare ViT':>11}")
    for k, v in ts.items(): print(f"{k:18} {1000 * statistics.median(v):9.1f} {statistics.median(v) / base:11.2f}")


def bench_matchers(a):
    from ssl3d.data import preprocessing
    from ssl3d.phantoms import make_phantom
    from ssl3d.matchers import BBoxMatcher, NCCMatcher, matcher_errors, build_matcher
    prep = preprocessing('ct')
    subs = [prep(make_phantom(seed=s, shape=tuple(a.shape))) for s in range(a.phantoms)]
    ms = [('bbox', BBoxMatcher()), ('ncc (±24/±8, step 4, ×4)', NCCMatcher()),
          ('ncc (±12/±4, step 2, ×2)', NCCMatcher(radius=(12, 12, 4), step=2, down=2))]
    if a.vp_checkpoint: ms.append(('vp (±24/±8, step 8)', build_matcher('vp', checkpoint=a.vp_checkpoint, step=8)))
    print(f"{a.phantoms} abdomen phantoms {tuple(a.shape)}, query crops {tuple(a.crop)}, errors in mm over (ordered pair, organ), "
          f"{a.max_pairs or 'all'} pairs")
    print(f"{'matcher':26} {'n':>5} {'mean':>7} {'median':>7} {'p90':>7} {'s':>6}")
    for name, mt in ms:
        t0 = time.perf_counter(); e = matcher_errors(subs, mt, tuple(a.crop), a.max_pairs)
        print(f"{name:26} {len(e):5d} {e.mean():7.1f} {np.median(e):7.1f} {np.percentile(e, 90):7.1f} {time.perf_counter() - t0:6.1f}")


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--preset', default='cpu-small')
    p.add_argument('--size', type=int, nargs=3, default=[32, 32, 16])
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--device', default='cpu')
    p.add_argument('--matchers', action='store_true', help='print the matcher error table instead')
    p.add_argument('--phantoms', type=int, default=8)
    p.add_argument('--shape', type=int, nargs=3, default=[96, 96, 48])
    p.add_argument('--crop', type=int, nargs=3, default=[32, 32, 16])
    p.add_argument('--vp-checkpoint', default=None)
    p.add_argument('--max-pairs', type=int, default=None, help='use only the first ordered pairs (the VP matcher is slow on CPU)')
    a = p.parse_args()
    bench_matchers(a) if a.matchers else bench_steps(a)
