"""GPU check (see benchmarks/README.md for the report format): every registered method's preset trained for a few
hundred steps with AMP and the batched pipeline where the method has one, timed step by step, then a small
label-efficiency grid through papermill. Writes OUT/report.json and OUT/report.md.

Each step is timed in three parts, with the device synchronised between them:
  wait   - waiting for the DataLoader's next batch and moving it to the device (the CPU pipeline's share),
  prep   - `method.prepare_batch` on the device (batched path only),
  train  - forward, backward and the optimizer step under autocast (AMP on CUDA).
data_wait = wait / (wait + prep + train); crops/s = batch size x steps/s. After the run the method's step is timed
against a bare network step (the transferred encoder+decoder, forward+backward of one view batch with a trivial
loss), alternately, to give the step-cost ratio.
Run:  benchmarks/gpu_check.sh [--device cuda|cpu] [--tiny] [--out DIR] [--steps N] [--workers N] [--methods a,b]
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import torch
from ssl3d.core import pick_device
from ssl3d.phantoms import write_phantom_dataset
from ssl3d.methods.core import METHODS, build_method, PretextDataset, BatchedPretextDataset, has_batched, RAW_KEY
from ssl3d.patches import collate
from ssl3d.pretrain import pretrain_subjects, pooled_pretrain_subjects, _load_method_modules
from ssl3d.train import TrainConfig, train_config, TRAIN_PRESETS
from ssl3d.batched import DeviceVolumes, volumes_fit

ROOT = Path(__file__).resolve().parents[1]


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


def to_dev(b, dev):
    return {k: (v.to(dev, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in b.items()}


def first_volume(batch):
    "The first 5D float tensor of a prepared batch (the network input of one view)."
    return next(v for v in batch.values() if isinstance(v, torch.Tensor) and v.ndim == 5 and v.is_floating_point())


def bare_step(method, x):
    "forward+backward of the transferred modules on x with a trivial loss (the 'bare network step')."
    t = method.transfer()
    feats = t['encoder'](x)
    out = t['decoder'](feats, size=x.shape[2:]) if t.get('decoder') is not None else feats
    outs = out if isinstance(out, (list, tuple)) else [out]
    sum(o.float().mean() for o in outs).backward()


def check_method(name, a, subjects, dev, pool_info=None):
    cls = METHODS.get(name)
    want = a.preset or ('tiny' if a.tiny else 'paper')
    preset = want if want in cls.presets() else 'cpu-small'
    torch.manual_seed(0)
    m = build_method(name, None, preset=preset)
    if callable(getattr(m, 'bind_pool', None)): m.bind_pool(subjects, pool_info)  # as pretrain() does (e.g. MixCL)
    tp = {**cls.TRAIN_PRESETS.get(preset, {})}
    cfg = train_config(preset if preset in TRAIN_PRESETS else None, **tp)
    bs = a.batch_size or (2 if a.tiny else cfg.batch_size)
    batched = has_batched(m) and not a.no_batched
    vod = batched and volumes_fit(subjects, dev)
    if vod: m.device_volumes = DeviceVolumes(subjects)
    spv = max(1, -(-bs * (a.steps + 1) // len(subjects)))
    ds = (BatchedPretextDataset(subjects, m, spv, 0, volumes_on_device=vod) if batched else PretextDataset(subjects, m, spv, 0))
    dl = torch.utils.data.DataLoader(ds, batch_size=bs, shuffle=True, collate_fn=collate, num_workers=a.workers,
                                     pin_memory=dev.type == 'cuda', drop_last=True, persistent_workers=False,
                                     generator=torch.Generator().manual_seed(0))
    m.to(dev).train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)
    amp = dev.type == 'cuda'
    dt = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(dev.type, enabled=amp and dt == torch.float16)
    if dev.type == 'cuda': torch.cuda.reset_peak_memory_stats(dev)
    it = iter(dl)
    rows, last, warm = [], None, min(3, max(0, a.steps - 1))
    for step in range(a.steps):
        t0 = time.perf_counter()
        b = to_dev(next(it), dev); sync(dev)
        t1 = time.perf_counter()
        if batched:
            with torch.no_grad(): b = m.prepare_batch({k: v for k, v in b.items() if k != RAW_KEY})
            sync(dev)
        t2 = time.perf_counter()
        with torch.autocast(dev.type, dtype=dt, enabled=amp):
            out = m(b)
        opt.zero_grad(set_to_none=True)
        scaler.scale(out['loss']).backward(); scaler.step(opt); scaler.update()
        m.after_step(step + 1, a.steps)
        sync(dev)
        t3 = time.perf_counter()
        last = float(out['loss'])
        if step >= warm: rows.append((t1 - t0, t2 - t1, t3 - t2))
    wait, prep, train = (sum(r[i] for r in rows) for i in range(3))
    total = wait + prep + train
    # step cost vs the bare network step, alternately
    x = first_volume(b).detach()
    ts, tb = [], []
    for _ in range(a.ratio_reps):
        for lst, f in ((ts, lambda: m(b)['loss'].backward()), (tb, lambda: bare_step(m, x))):
            m.zero_grad(set_to_none=True); sync(dev); t = time.perf_counter()
            with torch.autocast(dev.type, dtype=dt, enabled=amp): f()
            sync(dev); lst.append(time.perf_counter() - t)
    return dict(method=name, preset=preset, batched=batched, volumes_on_device=vod, steps=a.steps, timed_steps=len(rows),
                batch_size=bs, input_shape=list(x.shape), steps_per_s=len(rows) / total, crops_per_s=bs * len(rows) / total,
                data_wait=wait / total, device_prep=prep / total, step_ms=1000 * total / len(rows),
                gpu_mem_gib=torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == 'cuda' else None,
                step_vs_bare=statistics.median(ts) / statistics.median(tb), final_loss=last)


def label_efficiency(a, out, dev):
    nb = ROOT / 'nbs' / 'experiments' / 'label_efficiency.ipynb'
    d = out / 'label_efficiency'; d.mkdir(parents=True, exist_ok=True)
    p = dict(methods=a.le_methods, seeds='0', label_fractions='0.5,1.0' if not a.tiny else '1.0',
             pretrain_steps=2 if a.tiny else 200, finetune_steps=2 if a.tiny else 200, device=dev.type,
             backbone='tiny' if a.tiny else 'cpu-small')
    cmd = [sys.executable, '-m', 'papermill', str(nb), str(d / 'executed.ipynb'), '--cwd', str(d), '-p', 'out_dir', '.',
           *[x for k, v in p.items() for x in ('-p', k, str(v))], '--no-progress-bar']
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'MPLBACKEND': 'Agg', 'PYTHONWARNINGS': 'ignore'})
    res = d / 'results.csv'
    return dict(ok=r.returncode == 0 and res.exists(), seconds=time.perf_counter() - t, params=p,
                results_rows=max(0, len(res.read_text().splitlines()) - 1) if res.exists() else 0,
                error=None if r.returncode == 0 else r.stderr[-1500:])


def fmt(v, spec):
    return '-' if v is None else format(v, spec)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--device', default='cuda')
    p.add_argument('--tiny', action='store_true', help="tiny presets, 3 steps, a 1-cell grid (CI smoke test)")
    p.add_argument('--preset', default=None, help="method preset (default 'paper'; --tiny 'tiny'); methods without it use 'cpu-small'")
    p.add_argument('--out', default='runs/gpu_check')
    p.add_argument('--steps', type=int, default=None, help='training steps per method (default 300; --tiny 3)')
    p.add_argument('--batch-size', type=int, default=None, help="default: the preset's (--tiny: 2)")
    p.add_argument('--workers', type=int, default=None, help='DataLoader workers (default: min(8, cores); --tiny 0)')
    p.add_argument('--methods', default=None, help='comma-separated (default: every registered method but toy)')
    p.add_argument('--le-methods', default=None, help="label-efficiency methods (default 'random,models_genesis,vectorpose'; --tiny 'vectorpose')")
    p.add_argument('--no-batched', action='store_true', help='per-item pipeline for every method')
    p.add_argument('--no-label-efficiency', action='store_true')
    p.add_argument('--ratio-reps', type=int, default=None, help='alternating reps of the step-cost ratio (default 5; --tiny 2)')
    a = p.parse_args()
    a.steps = a.steps or (3 if a.tiny else 300)
    a.workers = a.workers if a.workers is not None else (0 if a.tiny else min(8, os.cpu_count() or 1))
    a.ratio_reps = a.ratio_reps or (2 if a.tiny else 5)
    a.le_methods = a.le_methods or ('vectorpose' if a.tiny else 'random,models_genesis,vectorpose')
    dev = pick_device(a.device)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    _load_method_modules()
    methods = a.methods.split(',') if a.methods else [n for n in METHODS.names() if n != 'toy']
    shape = (48, 48, 32) if a.tiny else (96, 96, 64) if a.preset == 'cpu-small' else (192, 192, 160)
    data = out / 'data'
    if not (data / 'dataset.json').exists(): write_phantom_dataset(data, n=3 if a.tiny else 8, n_test=0, shape=shape, seed=0)
    subjects, _ = pretrain_subjects(data, 'pretrain')
    t0 = time.perf_counter()
    rows = []
    labelled = None  # label-aware methods (MixCL) pretrain on the labelled cases, in the pooled label space
    for name in methods:
        subj, info = subjects, None
        if getattr(METHODS.get(name), 'USES_LABELS', False):
            labelled = labelled or pooled_pretrain_subjects([data], 'pretrain', labels=True)
            subj, info = labelled
        try: rows.append(check_method(name, a, subj, dev, info))
        except Exception as e: rows.append(dict(method=name, error=f'{type(e).__name__}: {e}'))
        print(json.dumps(rows[-1]), flush=True)
    le = None if a.no_label_efficiency else label_efficiency(a, out, dev)
    env = dict(device=str(dev), device_name=torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu',
               torch=torch.__version__, threads=torch.get_num_threads(), workers=a.workers, tiny=a.tiny,
               amp=('bf16' if torch.cuda.is_bf16_supported() else 'fp16') if dev.type == 'cuda' else 'off',
               phantom_shape=list(shape), seconds=time.perf_counter() - t0)
    report = dict(env=env, methods=rows, label_efficiency=le)
    (out / 'report.json').write_text(json.dumps(report, indent=1))
    lines = [f"# GPU check: {env['device_name']} ({env['device']}), AMP {env['amp']}, {a.workers} workers, {env['threads']} threads, "
             f"torch {env['torch']}, {a.steps} steps per method", '',
             '| method | preset | batched | batch | steps/s | crops/s | data wait | device prep | step ms | GPU mem GiB | step / bare |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r: lines.append(f"| {r['method']} | error: {r['error'][:80]} |"); continue
        lines.append(f"| {r['method']} | {r['preset']} | {'yes' if r['batched'] else 'no'}{' (volumes on device)' if r['volumes_on_device'] else ''} "
                     f"| {r['batch_size']} | {r['steps_per_s']:.2f} | {r['crops_per_s']:.1f} | {r['data_wait']:.0%} | {r['device_prep']:.0%} "
                     f"| {r['step_ms']:.0f} | {fmt(r['gpu_mem_gib'], '.2f')} | {r['step_vs_bare']:.2f} |")
    if le is not None:
        lines += ['', f"Label efficiency ({le['params']['methods']}; fractions {le['params']['label_fractions']}): "
                  f"{'ok' if le['ok'] else 'FAILED'}, {le['results_rows']} result rows, {le['seconds']:.0f} s"]
    (out / 'report.md').write_text('\n'.join(lines) + '\n')
    print('\n'.join(lines))
    return 0 if all('error' not in r for r in rows) and (le is None or le['ok']) else 1


if __name__ == '__main__':
    sys.exit(main())
