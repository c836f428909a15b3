"""Which fine-tuning settings let a segmentation network learn the phantom abdomen within a CPU budget?

Validation split only (the test split is never looked at): random init, one label fraction and seed, a few hundred
steps per variant, best validation Dice printed per variant. Used to choose the experiment settings of
nbs/experiments/label_efficiency.ipynb; results are in that notebook.

Run (each variant ~2-3 min on one core): `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/finetune_recipe.py
--data runs/le/data --splits runs/le/splits.json --out runs/recipe [--variants paper noaug window ...]`
where the data and split file are those the label-efficiency notebook wrote (or any MSD-layout dataset).
"""
import argparse, csv, warnings
from pathlib import Path
import torch
from ssl3d.finetune import finetune

WINDOW = [-175, 250]  # abdominal soft-tissue window (HU)
VARIANTS = {  # name -> FinetuneConfig overrides on top of the common settings below
    'paper': {},  # -1000..1000 HU, flips p=0.5 per axis + brightness/gamma/blur, lr 1e-3
    'noaug': {'augment': False},
    'window': {'hu_range': WINDOW},
    'window_noaug': {'hu_range': WINDOW, 'augment': False},
    'window_lr3': {'hu_range': WINDOW, 'lr': 3e-3},
    'window_lr3_noflip': {'hu_range': WINDOW, 'lr': 3e-3, 'flip_p': 0.0},
    'window_lr3_noaug': {'hu_range': WINDOW, 'lr': 3e-3, 'augment': False},
}

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--data', required=True); p.add_argument('--splits', required=True); p.add_argument('--out', required=True)
    p.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument('--steps', type=int, default=600); p.add_argument('--label-fraction', type=float, default=1.0)
    p.add_argument('--seed', type=int, default=0)
    a = p.parse_args()
    warnings.filterwarnings('ignore'); torch.set_num_threads(1)
    common = dict(backbone='cpu-small', batch_size=2, patch_size=(32, 32, 32), spacing=(6., 6., 6.), eval_every=100)
    for name in a.variants:
        out = Path(a.out) / name
        finetune(a.data, 'none', out, label_fraction=a.label_fraction, seed=a.seed, preset='cpu-small', steps=a.steps,
                 splits_file=a.splits, overrides={**common, **VARIANTS[name]}, progress=False, verbose=False)
        dice = [float(r['val_dice']) for r in csv.DictReader(open(out / 'eval.csv'))]
        trace = ' '.join(f"{d:.2f}" for d in dice)
        print(f"{name:18s} best validation Dice {max(dice):.3f}  (by validation pass: {trace})", flush=True)

if __name__ == '__main__': main()
