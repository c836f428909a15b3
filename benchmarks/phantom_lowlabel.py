"""Low-label check on abdomen phantoms: a tiny 3D U-Net trained from scratch with many vs few labelled volumes.

Run: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/phantom_lowlabel.py --labelled 12 2 --minutes 10 --steps 5000`.
Prints mean foreground Dice (13 labels) on held-out phantoms for each number of labelled training volumes.
A clear gap between 10+ and 1-2 labelled volumes is what gives self-supervised pretraining room to help.
"""
import argparse, time
import numpy as np, torch
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.nets import BasicUNet
from ssl3d.phantoms import make_phantom, PHANTOM_PRESETS

SHAPE = (48, 48, 32)  # ~8 mm voxels: coarse, but keeps each run within ~3 min on one busy core

def volumes(seeds):
    "Phantoms as (image in [0,1] after a -175..250 HU window, label) tensors."
    xs, ys = [], []
    for s in seeds:
        sub = make_phantom('abdomen', s, SHAPE)
        xs.append(((sub['image'].data.clamp(-175, 250) + 175) / 425).float()); ys.append(sub['label'].data.long())
    return torch.stack(xs), torch.stack(ys)

def run(n_labelled, steps, minutes, test, seed=0):
    torch.manual_seed(seed)
    x, y = volumes(range(100, 100 + n_labelled))
    k = len(PHANTOM_PRESETS['abdomen'].labels) + 1
    net = BasicUNet(spatial_dims=3, in_channels=1, out_channels=k, features=(8, 8, 16, 32, 32, 8))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    t0, step = time.time(), 0
    g = torch.Generator().manual_seed(seed)
    while step < steps and time.time() - t0 < minutes * 60:
        i = torch.randint(len(x), (2,), generator=g)
        loss = loss_fn(net(x[i]), y[i]); opt.zero_grad(); loss.backward(); opt.step(); step += 1
    net.eval(); dm = DiceMetric(include_background=False, reduction='mean_batch', ignore_empty=True)
    with torch.no_grad():
        for xt, yt in zip(*test):
            pred = net(xt[None]).argmax(1, keepdim=True)
            dm(torch.nn.functional.one_hot(pred[:, 0], k).permute(0, 4, 1, 2, 3), torch.nn.functional.one_hot(yt[None, 0], k).permute(0, 4, 1, 2, 3))
    per = dm.aggregate()
    return float(per.nanmean()), per, step, time.time() - t0

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--labelled', type=int, nargs='+', default=[12, 1])
    p.add_argument('--steps', type=int, default=400)
    p.add_argument('--minutes', type=float, default=3.0)
    p.add_argument('--n-test', type=int, default=4)
    a = p.parse_args()
    torch.set_num_threads(1)
    test = volumes(range(1000, 1000 + a.n_test))
    names = PHANTOM_PRESETS['abdomen'].labels
    for n in a.labelled:
        mean, per, steps, dt = run(n, a.steps, a.minutes, test)
        print(f"labelled={n:3d}: mean Dice {mean:.3f} ({steps} steps, {dt:.0f} s); "
              + ', '.join(f"{nm} {d:.2f}" for nm, d in zip(names, per.tolist())))

if __name__ == '__main__': main()
