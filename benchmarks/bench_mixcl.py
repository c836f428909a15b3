"""Cost of one MixCL training step against a bare UNETR forward/backward on the same batch.

MixCL (built from a preset, `cpu-small` by default) is timed for one full step on a batch of real items (two
phantom datasets annotating different organs, pooled; `prepare` made the views, P2 and the sampled pixels):
its forward (one encoder pass over view 1, view 2 and P2, per-block projectors, pixel Barlow Twins, label
contrast, reconstruction), backward and an AdamW step. The baseline is the same UNETR (ViT encoder + UNETR
decoder + 1×1×1 head) alone on the same 3·B volumes with an MSE to the clean patches — what any method that
reconstructs these three views must pay; a second baseline runs it on the B view-1 volumes only. Prints
milliseconds per step (median of `--steps` interleaved rounds after a warm-up; see bench_two_view.py) and ratios,
plus the CPU cost of `prepare` per item (the DataLoader side). Not a test; run it by hand:

    python benchmarks/bench_mixcl.py --steps 5 [--preset cpu-small] [--batch 2] [--device cpu]
"""
import statistics, sys, tempfile, time
from pathlib import Path
import torch
import torch.nn.functional as F
from ssl3d.core import pick_device
from ssl3d.phantoms import write_phantom_dataset
from ssl3d.pretrain import pooled_pretrain_subjects
from ssl3d.methods.core import PretextDataset, build_method
from ssl3d.patches import collate, to_device
import ssl3d.methods.mixcl  # noqa: F401  (registers 'mixcl')
sys.path.insert(0, str(Path(__file__).parent))
from bench_two_view import bench_parser, time_interleaved  # noqa: E402


def pooled_items(m, batch, shape, seed=0):
    "A collated batch of real MixCL items from two phantom subsets, and the seconds `prepare` took per item."
    root = Path(tempfile.mkdtemp())
    write_phantom_dataset(root / 'A', n=2, n_test=0, seed=1, shape=shape, organs=['liver', 'spleen', 'stomach'])
    write_phantom_dataset(root / 'B', n=2, n_test=0, seed=2, shape=shape, organs=['liver', 'right_kidney', 'left_kidney', 'pancreas'])
    subs, info = pooled_pretrain_subjects([root / 'A', root / 'B'])
    m.bind_pool(subs, info)
    ds = PretextDataset(subs, m, samples_per_volume=max(1, batch), seed=seed)
    t = time.perf_counter(); items = [ds[i] for i in range(batch)]
    return collate(items), (time.perf_counter() - t) / batch


def method_step(m, batch):
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    def step():
        out = m(batch); opt.zero_grad(set_to_none=True); out['loss'].backward(); opt.step()
    return step


def bare_step(m, x, target):
    "The same UNETR (encoder, decoder, reconstruction head) on `x`: forward, MSE, backward, AdamW."
    mods = torch.nn.ModuleList([m.encoder, m.decoder, m.recon_head])
    opt = torch.optim.AdamW([p for p in mods.parameters() if p.requires_grad], lr=1e-4)
    def step():
        y = m.recon_head(m.decoder(m.encoder(x), size=x.shape[2:]))
        loss = F.mse_loss(y, target); opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    return step


def main(argv=None):
    ap = bench_parser(__doc__, batch=2)
    ap.add_argument('--shape', type=int, nargs=3, default=None, help='phantom shape (default: 2× the patch)')
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    torch.manual_seed(a.seed)
    m = build_method('mixcl', preset=a.preset)
    shape = tuple(a.shape) if a.shape else tuple(2 * s for s in m.config.input_size)
    batch, prep_s = pooled_items(m, a.batch, shape, a.seed)
    m = m.to(device).train(); batch = to_device(batch, device)
    x3 = torch.cat([batch['view1'], batch['view2'], batch['view_p2']])
    t3 = torch.cat([batch['clean1'], batch['clean1'], batch['clean2']])
    steps = {'bare UNETR fwd/bwd, B volumes': bare_step(m, batch['view1'], batch['clean1']),
             'bare UNETR fwd/bwd, same 3B volumes': bare_step(m, x3, t3),
             'MixCL step': method_step(m, batch)}
    ms = time_interleaved(steps, a.steps, device)
    base = ms['bare UNETR fwd/bwd, same 3B volumes']
    c = m.config
    print(f"MixCL preset {a.preset!r} on {device}: backbone {c.backbone!r}, patch {tuple(c.input_size)}, batch {a.batch} items "
          f"(= {3 * a.batch} volumes: view 1, view 2, P2), {len(m.id_layers)} identity blocks, {c.budget} pixels/class")
    for k, v in ms.items(): print(f"  {k:38s} {v:9.1f} ms   ×{v / base:5.2f} of the bare 3B pass")
    print(f"  MixCL step / bare UNETR on the same batch: {ms['MixCL step'] / base:.2f}")
    print(f"  prepare (CPU, per item, in the DataLoader): {prep_s * 1000:.0f} ms")


if __name__ == '__main__':
    main()
