"""Does the online probe rank pretraining checkpoints the way full fine-tuning does?

Pretrains several methods for two lengths each on one phantom dataset (val/test cases excluded through a shared
split file), takes the online probe's Dice at the last pretraining step (fit on `--probe-volumes` training cases,
scored on the split's validation cases), fine-tunes every checkpoint plus a random-init control with the same
split, labelled subset, seed and steps, evaluates each on the split's test cases, and prints both Dice values per
checkpoint and Spearman's rank correlation between them. Not a test; run it by hand (about 10 CPU minutes):

    python benchmarks/probe_rank.py --out /tmp/probe_rank --n 12 --shape 64 64 48 --short 20 --long 80 --ft-steps 100
"""
import argparse, csv, json, time
from pathlib import Path
import numpy as np
import torch
from scipy.stats import spearmanr
from ssl3d.phantoms import write_phantom_dataset
from ssl3d.pretrain import pretrain
from ssl3d.finetune import finetune
from ssl3d.evaluate import evaluate_model
from ssl3d.data import ensure_splits
from ssl3d.probe import ProbeConfig, OnlineProbe, fit_probe
from ssl3d.data import load_dataset, preprocessing, select_subjects
from ssl3d.models import build_backbone

# (method, preset, method overrides): all build the 'tiny' encoder, so the probe sees comparable features
METHODS = [('vectorpose', 'tiny', {}), ('models_genesis', 'tiny', {}), ('pgl', 'cpu-small', {})]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', default='/tmp/probe_rank')
    ap.add_argument('--n', type=int, default=12, help='labelled phantoms (split 6:2:2 by the fine-tuning default)')
    ap.add_argument('--shape', type=int, nargs=3, default=[64, 64, 48])
    ap.add_argument('--short', type=int, default=20)
    ap.add_argument('--long', type=int, default=80)
    ap.add_argument('--ft-steps', type=int, default=100)
    ap.add_argument('--ft-preset', default='tiny')
    ap.add_argument('--label-fraction', type=float, default=0.5)
    ap.add_argument('--probe-volumes', type=int, default=2)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--device', default='cpu')
    a = ap.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    data = out/'data'
    if not (data/'dataset.json').exists(): write_phantom_dataset(data, n=a.n, n_test=0, seed=a.seed, shape=tuple(a.shape))
    splits, spath = ensure_splits(data, a.seed)
    pc = dict(volumes=a.probe_volumes, val_volumes=len(splits['val']))
    rows, t0 = [], time.time()
    for method, preset, over in METHODS:
        for steps in (a.short, a.long):
            run = out/f'{method}_{steps}'
            pretrain(data, method, run, preset=preset, steps=steps, seed=a.seed, device=a.device, splits_file=spath,
                     method_overrides=over, train_overrides={'batch_size': 2}, probe_every=steps, probe_config=pc)
            ev = list(csv.DictReader(open(run/'eval.csv')))
            rows.append(dict(name=f'{method} {steps}', init=str(run), probe=float(ev[-1]['probe_dice'])))
    # random-init control: the probe of a seeded, untrained tiny encoder (same preprocessing and volumes)
    torch.manual_seed(a.seed)
    enc, _ = build_backbone(preset='tiny')
    subs = load_dataset(data, validate=False)
    tr = preprocessing('ct')
    enc = enc.to(a.device)
    probe = OnlineProbe(select_subjects(subs, splits['train'][:a.probe_volumes]), select_subjects(subs, splits['val']), 14, tr,
                        ProbeConfig(**pc))
    rows.append(dict(name='random init', init='none', probe=fit_probe(enc.eval(), probe.fit, probe.val, 14, probe.cfg)['probe_dice']))
    for r in rows:
        ft_dir = out/('ft_' + r['name'].replace(' ', '_'))
        best = finetune(data, r['init'], ft_dir, a.label_fraction, a.seed, a.ft_preset, a.ft_steps, a.device, spath, verbose=False)
        m = evaluate_model(best, data, ft_dir/'eval', split='test', device=a.device, save_predictions=False, verbose=False)
        r['finetune'] = float(np.nanmean([x['value'] for x in m if x['metric'] == 'dice']))
    rho, p = spearmanr([r['probe'] for r in rows], [r['finetune'] for r in rows])
    print(f"{'checkpoint':<22}{'probe Dice':>12}{'fine-tune test Dice':>22}")
    for r in rows: print(f"{r['name']:<22}{r['probe']:>12.3f}{r['finetune']:>22.3f}")
    print(f"Spearman rho = {rho:.3f} (p = {p:.3f}, n = {len(rows)}); {time.time() - t0:.0f} s")
    json.dump(dict(rows=rows, spearman=rho, p=p, args=vars(a)), open(out/'probe_rank.json', 'w'), indent=1)


if __name__ == '__main__': main()
