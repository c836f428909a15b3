"""Patch-loader throughput: ssl3d's preloaded in-memory loader vs plain `tio.Queue` on the same subjects.

Writes a small synthetic CT dataset (NIfTI, MSD layout) to a temporary folder, then draws the same number of
foreground-weighted patches with both backends of `ssl3d.patches.patch_loader` (same preprocessing, same patch size,
batch size and samples per volume) and prints patches/s side by side and their ratio. Setup time (building the
loader, which for the memory backend includes reading and preprocessing every volume once) is counted in the
total. Not a test; run it by hand:

    python benchmarks/bench_loader.py --n 6 --shape 128 128 64 --patch 64 64 32 --epochs 2 --workers 0
"""
import argparse, json, shutil, tempfile, time
from pathlib import Path
import nibabel as nib
import numpy as np
from ssl3d.data import load_dataset, preprocessing
from ssl3d.patches import patch_loader


def write_dataset(root: Path, n: int, shape, spacing=(1.0, 1.0, 2.0)) -> Path:
    "n CT-like volumes (int16 HU, a soft-tissue ellipsoid with two labelled organs) in MSD layout."
    meta = dict(name='Bench', modality={'0': 'CT'}, labels={'0': 'background', '1': 'a', '2': 'b'}, training=[])
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij')
    for i in range(n):
        rng = np.random.default_rng(i)
        img = np.where((x / .85)**2 + (y / .7)**2 < 1, 40., -1000.) + rng.normal(0, 15, shape)
        lab = np.zeros(shape, np.uint8)
        lab[((x - .3)**2 + y**2 + z**2) < .08] = 1
        lab[((x + .4)**2 + (y - .1)**2 + (z / .5)**2) < .02] = 2
        img[lab == 1] += 60
        aff = np.diag([*spacing, 1.])
        for d, a, dt in (('imagesTr', img, np.int16), ('labelsTr', lab, np.uint8)):
            (root/d).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(a.astype(dt), aff), str(root/d/f'c{i:02d}.nii.gz'))
        meta['training'].append(dict(image=f'./imagesTr/c{i:02d}.nii.gz', label=f'./labelsTr/c{i:02d}.nii.gz'))
    (root/'dataset.json').write_text(json.dumps(meta))
    return root


def run(backend, subjects, args):
    t0 = time.perf_counter()
    dl = patch_loader(subjects, args.patch, args.batch, args.spv, num_workers=args.workers,
                      label_probabilities={0: 1, 1: 1, 2: 1}, transform=preprocessing('ct'), seed=0, backend=backend)
    setup = time.perf_counter() - t0
    n, epochs = 0, []
    for _ in range(args.epochs):
        t1 = time.perf_counter()
        for b in dl: n += b['image'].shape[0]
        epochs.append(time.perf_counter() - t1)
    total = time.perf_counter() - t0
    return dict(setup=setup, epochs=epochs, patches=n, total=total, pps=n / total, steady=n / args.epochs / min(epochs))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--n', type=int, default=6, help='volumes')
    p.add_argument('--shape', type=int, nargs=3, default=(128, 128, 64))
    p.add_argument('--patch', type=int, nargs=3, default=(64, 64, 32))
    p.add_argument('--batch', type=int, default=2)
    p.add_argument('--spv', type=int, default=8, help='samples per volume')
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--workers', type=int, default=0)
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix='ssl3d_bench_'))
    try:
        subjects = load_dataset(write_dataset(tmp/'ds', args.n, tuple(args.shape)))
        print(f"{args.n} volumes {tuple(args.shape)}, patch {tuple(args.patch)}, batch {args.batch}, "
              f"{args.spv} samples/volume, {args.epochs} epochs, {args.workers} workers, label-weighted sampling")
        res = {b: run(b, subjects, args) for b in ('queue', 'memory')}
        print(f"{'loader':<22}{'setup s':>9}{'epoch s':>18}{'patches':>9}{'total s':>9}{'patches/s':>11}{'steady p/s':>12}")
        for b, name in (('queue', 'tio.Queue'), ('memory', 'ssl3d memory (preload)')):
            r = res[b]
            print(f"{name:<22}{r['setup']:>9.2f}{' / '.join(f'{e:.2f}' for e in r['epochs']):>18}{r['patches']:>9}"
                  f"{r['total']:>9.2f}{r['pps']:>11.1f}{r['steady']:>12.1f}")
        print(f"ratio memory / queue: {res['memory']['pps'] / res['queue']['pps']:.1f}x overall (incl. setup), "
              f"{res['memory']['steady'] / res['queue']['steady']:.1f}x steady state")
    finally:
        shutil.rmtree(tmp)


if __name__ == '__main__':
    main()
