"""Does MoCo's InfoNCE fall on phantoms? A short CPU pretraining run with a chosen view difficulty.

Run: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/moco_views.py [--steps 300] [--queue 64] [--momentum 0.99]
[--set '{"min_overlap": 0.5}']`; `--set` takes MoCoConfig overrides as JSON, e.g. identical views:
`'{"scale_range": [1.0, 1.0], "flip_p": 0, "min_overlap": 0.99, "noise_p": 0, "blur_p": 0, "brightness_p": 0, "gamma_p": 0}'`.
Prints the mean loss of each tenth of the run next to chance, log(1 + queue). Results: nbs/55_methods.moco.ipynb.
"""
import argparse, json, math, tempfile, time, warnings
import numpy as np, torch
from ssl3d.phantoms import make_phantom
from ssl3d.data import preprocessing
import ssl3d.methods.moco  # registers 'moco'
from ssl3d.methods.core import build_method, PretextDataset
from ssl3d.train import Trainer, train_config

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--volumes', type=int, default=12)
    p.add_argument('--shape', type=int, nargs=3, default=(64, 64, 32), help='phantom grid (X Y Z)')
    p.add_argument('--fov', default='full', help="phantom field of view: 'full' or 'random'")
    p.add_argument('--samples-per-volume', type=int, default=16)
    p.add_argument('--hu-range', type=float, nargs=2, default=(-1000, 1000), help='CT window mapped to [0, 1]')
    p.add_argument('--queue', type=int, default=64)
    p.add_argument('--momentum', type=float, default=0.99)
    p.add_argument('--steps', type=int, default=300)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--tau', type=float, default=0.2)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--set', default='{}', help='MoCoConfig overrides as JSON')
    a = p.parse_args()
    warnings.filterwarnings('ignore'); torch.set_num_threads(1)
    prep = preprocessing('ct', hu_range=tuple(a.hu_range))
    subjects = [prep(make_phantom(seed=s, shape=tuple(a.shape), fov=a.fov)) for s in range(a.volumes)]
    torch.manual_seed(0)
    m = build_method('moco', {'input_size': (32, 32, 16), 'queue_size': a.queue, 'momentum': a.momentum, 'tau': a.tau,
                              **json.loads(a.set)}, preset='cpu-small')
    cfg = train_config('cpu-small', **{**m.TRAIN_PRESETS['cpu-small'], 'steps': a.steps, 'batch_size': a.batch_size,
                                       'lr': a.lr, 'ckpt_every': 0, 'progress': False, 'log_every': 10})
    t = time.time()
    with tempfile.TemporaryDirectory() as d:
        hist = Trainer(m, PretextDataset(subjects, m, samples_per_volume=a.samples_per_volume, seed=0), cfg, d).fit()
    loss = np.array([r['loss'] for r in hist['train']])
    n = max(1, len(loss) // 10)
    print(f"{a.volumes} volumes of {tuple(a.shape)} ({a.fov} fov, window {tuple(a.hu_range)} HU, {a.samples_per_volume} crops each per epoch), queue {a.queue}, m {a.momentum}, tau {a.tau}, lr {a.lr}, batch {a.batch_size}, "
          f"{a.steps} steps in {time.time() - t:.0f} s; chance log(1 + K) = {math.log(1 + a.queue):.3f}")
    Q = m.queue.float(); K = Q.shape[0]
    cos = ((Q @ Q.T).sum() - K) / (K * (K - 1))
    print(f"mean cosine between queued keys at the end: {cos:.3f} (1 = collapsed)")
    print('loss by tenth: ' + ' '.join(f"{loss[i * n:(i + 1) * n].mean():.2f}" for i in range(min(10, len(loss)))))

if __name__ == '__main__': main()
