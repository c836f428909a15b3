"""The bad-input battery (issue 19): every case is built from phantoms at run time and run through the `ssl3d` CLI
in-process. Each must exit non-zero with ONE error line naming the file or value at fault, print no traceback, and
leave nothing half-written in its output folder. Also: the fine-tuning run guard, tiny and multi-channel datasets,
read-only and full outputs, grid kill-and-resume without orphans, and the cleanup of temporary files."""
import contextlib, gzip, io, json, os, shutil, signal, subprocess, sys, time, warnings
from pathlib import Path
import nibabel as nib
import numpy as np
import pytest
import torch

from ssl3d.cli import main
from ssl3d.core import Ssl3dError, save_json
from ssl3d.models import build_backbone
from ssl3d.phantoms import write_phantom_dataset
from ssl3d.checkpoints import load_checkpoint, save_checkpoint

SHAPE, SP = (40, 40, 40), (6., 6., 6.)
FT = ['--preset', 'tiny', '--steps', '2', '--device', 'cpu', '--set', 'eval_every=2']


def cli(*args):
    "Run `ssl3d ARGS` in-process: (exit code, stdout, stderr). argparse errors exit through SystemExit."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter('always')   # warnings reach stderr as the console shows them (pytest would record them instead)
        warnings.showwarning = lambda m, c, f, l, file=None, line=None: sys.stderr.write(warnings.formatwarning(m, c, f, l))
        try: rc = main([str(a) for a in args])
        except SystemExit as e: rc = e.code
    return rc, out.getvalue(), err.getvalue()


def intact(folder):
    "Nothing half-written: no temporary files, and every JSON / checkpoint / NIfTI under `folder` reads back."
    folder = Path(folder)
    if not folder.exists(): return
    for p in folder.rglob('*'):
        if not p.is_file(): continue
        assert not p.name.endswith('.tmp'), f"temporary file left: {p}"
        if p.suffix == '.json': json.loads(p.read_text())
        elif p.suffix == '.pt': load_checkpoint(p)
        elif p.name.endswith('.nii.gz'): np.asanyarray(nib.load(p).dataobj)


def fails(args, *words, out=None, rc_ok=(1, 2)):
    "Assert the battery's contract for one invocation; returns the error line."
    rc, _, err = cli(*args)
    assert rc in rc_ok, f"exit {rc} for {args}: {err}"
    assert 'Traceback' not in err, err
    lines = [l for l in err.splitlines() if 'error:' in l]
    assert len(lines) == 1, err
    for w in words: assert str(w) in lines[0], f"{w!r} not in {lines[0]!r}"
    assert 'np.float64' not in lines[0]
    if out is not None: intact(out)
    return lines[0]


# ------------------------------------------------------------------ fixtures: phantoms and runs built once per module

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    "A 6-case phantom dataset, a tiny fine-tuned model, a pretrained-style checkpoint and a pretraining run folder."
    root = tmp_path_factory.mktemp('bad')
    data = root/'ds'
    write_phantom_dataset(data, n=6, n_test=1, seed=0, shape=SHAPE, spacing=SP)
    rc, _, err = cli('finetune', '--data', data, '--init', 'none', '--label-fraction', '0.5', '--out', root/'ft', *FT)
    assert rc == 0, err
    enc, dec = build_backbone(preset='tiny')
    prov = dict(method='vectorpose', backbone=dict(preset='tiny'), data=dict(hu_range=[-1000., 1000.]))
    save_checkpoint(root/'final.pt', model={}, transfer=dict(encoder=enc.state_dict(), decoder=dec.state_dict()), provenance=prov)
    pre = root/'pre'; pre.mkdir()
    shutil.copy(root/'final.pt', pre/'final.pt'); save_json(dict(provenance=prov), pre/'config.json')
    return root


def variant(base, name, mutate=None):
    "A copy of the base dataset (no split files) changed by `mutate(root)`."
    dst = base/'variants'/name
    shutil.copytree(base/'ds', dst, ignore=shutil.ignore_patterns('ssl3d_splits'))
    if mutate: mutate(dst)
    return dst


def img(root, k=1): return root/'imagesTr'/f'abdomen_{k:04d}.nii.gz'
def lab(root, k=1): return root/'labelsTr'/f'abdomen_{k:04d}.nii.gz'


def rewrite(path, fn, dtype=None, affine=None):
    "Rewrite a NIfTI with `fn(array)` (and optionally another dtype / affine)."
    im = nib.load(path); a = fn(np.asanyarray(im.dataobj).copy())
    out = nib.Nifti1Image(a.astype(dtype or a.dtype), im.affine if affine is None else affine)
    nib.save(out, path)


def truncate(path):
    b = Path(path).read_bytes(); Path(path).write_bytes(b[:len(b) // 2])


def short_gzip(path):
    raw = gzip.decompress(Path(path).read_bytes()); Path(path).write_bytes(gzip.compress(raw[:len(raw) // 2]))


def edit_json(root, fn):
    js = root/'dataset.json'; d = json.loads(js.read_text()); fn(d); js.write_text(json.dumps(d))


# ------------------------------------------------------------------ the data battery: `ssl3d data` and `ssl3d finetune`

def _float_truncated(r):
    rewrite(img(r), lambda a: a.astype(np.float32), np.float32); truncate(img(r))

def _nii_truncated(r):
    im = nib.load(img(r)); nib.save(im, r/'imagesTr'/'abdomen_0001.nii'); img(r).unlink()
    edit_json(r, lambda d: d['training'][1].update(image='./imagesTr/abdomen_0001.nii'))
    p = r/'imagesTr'/'abdomen_0001.nii'; p.write_bytes(p.read_bytes()[:-5000])

def _mha_truncated(r):
    import SimpleITK as sitk
    p = r/'imagesTr'/'abdomen_0001.mha'
    sitk.WriteImage(sitk.ReadImage(str(img(r))), str(p)); img(r).unlink()
    edit_json(r, lambda d: d['training'][1].update(image='./imagesTr/abdomen_0001.mha'))
    p.write_bytes(p.read_bytes()[:-5000])

def _shifted(a):
    aff = nib.load(img(a)).affine.copy(); aff[:3, 3] += 30; return aff

DATA_CASES = {
    # name: (mutate, words the error line must hold)
    'missing image file': (lambda r: img(r).unlink(), ['abdomen_0001.nii.gz', 'not found']),
    'missing label file': (lambda r: lab(r).unlink(), ['labelsTr/abdomen_0001.nii.gz', 'not found']),
    'garbage bytes': (lambda r: img(r).write_bytes(os.urandom(3000)), ['abdomen_0001.nii.gz', 'corrupt']),
    'empty file': (lambda r: img(r).write_bytes(b''), ['abdomen_0001.nii.gz']),
    'truncated .nii.gz': (lambda r: truncate(img(r)), ['abdomen_0001.nii.gz', 'truncated']),
    'valid gzip, short payload': (lambda r: short_gzip(img(r)), ['abdomen_0001.nii.gz', 'truncated image', '40×40×40']),
    'truncated label map': (lambda r: short_gzip(lab(r)), ['labelsTr/abdomen_0001.nii.gz', 'truncated']),
    'truncated float image': (_float_truncated, ['abdomen_0001.nii.gz', 'truncated']),
    'truncated .nii': (_nii_truncated, ['abdomen_0001.nii', 'truncated image']),
    'truncated .mha': (_mha_truncated, ['abdomen_0001.mha', 'corrupt']),
    'label shape mismatch': (lambda r: rewrite(lab(r), lambda a: a[:-2]), ['labelsTr/abdomen_0001.nii.gz', 'does not match image shape']),
    'label affine mismatch': (lambda r: rewrite(lab(r), lambda a: a, affine=_shifted(r)), ['labelsTr/abdomen_0001.nii.gz', 'affine', 'origin']),
    'non-integer labels': (lambda r: rewrite(lab(r), lambda a: a + 0.5, np.float32), ['labelsTr/abdomen_0001.nii.gz', 'non-integer', '0.5']),
    'undeclared label value': (lambda r: rewrite(lab(r), lambda a: np.where(a == 1, 99, a)), ['labelsTr/abdomen_0001.nii.gz', '[99]', 'the dataset declares']),
    'negative label values': (lambda r: rewrite(lab(r), lambda a: np.where(a == 1, -1, a.astype(np.int16))), ['labelsTr/abdomen_0001.nii.gz', '[-1]']),
    'NaN voxels': (lambda r: rewrite(img(r), lambda a: np.where(a > 500, np.nan, a.astype(np.float32)), np.float32), ['abdomen_0001.nii.gz', 'NaN/Inf']),
    'Inf voxels': (lambda r: rewrite(img(r), lambda a: np.where(a > 500, np.inf, a.astype(np.float32)), np.float32), ['abdomen_0001.nii.gz', 'NaN/Inf']),
    'dataset.json entry ../': (lambda r: edit_json(r, lambda d: d['training'][1].update(image='../elsewhere.nii.gz')), ['dataset.json', "'../elsewhere.nii.gz'", 'outside']),
    'dataset.json absolute path': (lambda r: edit_json(r, lambda d: d['training'][1].update(image='/etc/hostname')), ['dataset.json', "'/etc/hostname'", 'outside']),
    'invalid dataset.json': (lambda r: (r/'dataset.json').write_text('{"training": ['), ['dataset.json', 'invalid JSON']),
    'empty training list': (lambda r: edit_json(r, lambda d: d.update(training=[])), ["no 'training' cases"]),
}


@pytest.mark.parametrize('name', list(DATA_CASES))
def test_data_battery(base, name):
    mutate, words = DATA_CASES[name]
    root = variant(base, name.replace(' ', '_').replace('/', '_'), mutate)
    fails(['data', root, '--split', 'training'], *words)
    if name in ('truncated .nii.gz', 'undeclared label value', 'NaN voxels', 'label affine mismatch'):
        out = base/'out'/name.replace(' ', '_')   # the same check guards fine-tuning, before any output
        fails(['finetune', '--data', root, '--out', out, '--label-fraction', '1', *FT], *words, out=out)
        assert not (out/'finetune.json').exists() and not list(out.glob('*.pt'))


def _csv_root(base, name, rows):
    r = variant(base, name)
    lines = ['image,label'] + [f"{a},{b}" for a, b in rows]
    (r/'m.csv').write_text('\n'.join(lines) + '\n')
    return r/'m.csv'


def test_path_containment_every_layout(base, monkeypatch, tmp_path):
    ok = ('imagesTr/abdomen_0000.nii.gz', 'labelsTr/abdomen_0000.nii.gz')
    m = _csv_root(base, 'csv_abs', [ok, (str(base/'ds'/'imagesTr'/'abdomen_0001.nii.gz'), '')])
    fails(['data', m], 'm.csv: line 3', 'outside the dataset root', 'SSL3D_ALLOW_OUTSIDE_ROOT')
    m2 = _csv_root(base, 'csv_up', [ok, ('../../ds/imagesTr/abdomen_0001.nii.gz', '')])
    fails(['data', m2], 'm.csv: line 3', "'../../ds/imagesTr/abdomen_0001.nii.gz'")
    folder = tmp_path/'folder'; (folder/'images').mkdir(parents=True); (folder/'labels').mkdir()
    shutil.copy(img(base/'ds', 0), folder/'images'/'a.nii.gz'); shutil.copy(lab(base/'ds', 0), folder/'labels'/'a.nii.gz')
    (folder/'images'/'b.nii.gz').symlink_to(img(base/'ds', 1))   # a link that leaves the dataset folder
    fails(['data', folder], 'images/b.nii.gz', 'outside the dataset root')
    monkeypatch.setenv('SSL3D_ALLOW_OUTSIDE_ROOT', '1')           # the opt-in: images kept elsewhere on purpose
    assert cli('data', folder)[0] == 0 and cli('data', m)[0] == 0


# ------------------------------------------------------------------ names, values, checkpoints

def test_names_and_values(base):
    d, o = base/'ds', base/'out'/'names'
    fails(['finetune', '--data', d, '--out', o, *FT, 'backbone=nosuch'], 'backbone=', 'nosuch', out=o)
    fails(['finetune', '--data', d, '--out', o, *FT, 'nosuch_field=1'], "'nosuch_field'", out=o)
    fails(['finetune', '--data', d, '--out', o, '--preset', 'nosuch'], "'nosuch'", out=o)
    fails(['pretrain', '--data', d, '--out', o, '--method', 'nosuch'], "'nosuch'", out=o)
    for f in ('0', '1.5', '-0.1'):
        fails(['finetune', '--data', d, '--out', o, '--label-fraction', f, *FT], f'fraction={float(f)}', out=o)
    fails(['finetune', '--data', base/'nowhere', '--out', o, *FT], 'nowhere', 'not found', out=o)
    fails(['evaluate', '--data', d, '--model', base/'ft', '--out', o, '--split', 'nosuch'], "'nosuch'", out=o)
    fails(['data', d, '--kind', 'csv'], 'ds')
    assert not list(o.glob('*.pt'))


class Evil:
    def __reduce__(self): return (os.system, (f"touch {Path(os.environ.get('SSL3D_EVIL', '/tmp'))/'pwned'}",))


def test_foreign_and_malicious_checkpoints(base, tmp_path, monkeypatch):
    d, o = base/'ds', tmp_path/'o'
    monkeypatch.setenv('SSL3D_EVIL', str(tmp_path))
    torch.save({'model': Evil()}, tmp_path/'evil.pt')
    for cmd in (['finetune', '--data', d, '--out', o, *FT, '--init', tmp_path/'evil.pt'],
                ['evaluate', '--data', d, '--out', o, '--model', tmp_path/'evil.pt'],
                ['export', '--model', tmp_path/'evil.pt', '--out', o/'enc.pt']):
        fails(cmd, 'evil.pt', 'weights_only', out=o)
    assert not (tmp_path/'pwned').exists()
    (tmp_path/'junk.pt').write_bytes(os.urandom(500))
    fails(['evaluate', '--data', d, '--out', o, '--model', tmp_path/'junk.pt'], 'junk.pt', out=o)
    fails(['finetune', '--data', d, '--out', o, *FT, '--init', base/'ft'/'best.pt'], 'best.pt', 'not a pretrained checkpoint', out=o)
    fails(['evaluate', '--data', d, '--out', o, '--model', base/'final.pt'], 'final.pt', 'not a fine-tuned', out=o)
    # a checkpoint cut short by a crash, and one that lost weights
    b = (base/'ft'/'best.pt').read_bytes(); (tmp_path/'cut.pt').write_bytes(b[:len(b) // 2])
    fails(['export', '--model', tmp_path/'cut.pt', '--out', o/'enc.pt'], 'cut.pt', out=o)
    ck = load_checkpoint(base/'ft'/'best.pt'); ck['model'] = {k: v for k, v in list(ck['model'].items())[::2]}
    save_checkpoint(tmp_path/'partial.pt', **ck)
    fails(['export', '--model', tmp_path/'partial.pt', '--out', o/'enc.pt'], 'partial.pt', 'missing', out=o)
    fails(['evaluate', '--data', d, '--out', o, '--model', tmp_path/'partial.pt'], 'partial.pt', out=o)
    assert not (o/'enc.pt').exists()


def test_missing_encoder_keys_need_a_flag(base, tmp_path):
    ck = load_checkpoint(base/'final.pt')
    enc = ck['transfer']['encoder']; keep = dict(list(enc.items())[: len(enc) * 6 // 10])
    save_checkpoint(tmp_path/'holes.pt', model={}, transfer=dict(encoder=keep, decoder=None), provenance=ck['provenance'])
    o = tmp_path/'run'
    line = fails(['finetune', '--data', base/'ds', '--out', o, *FT, '--init', tmp_path/'holes.pt'], 'holes.pt', f'{len(enc) - len(keep)} of {len(enc)}',
                 '--allow-missing-keys', out=o)
    assert 'expected weights are missing' in line and not list(o.glob('*.pt'))
    rc, _, err = cli('finetune', '--data', base/'ds', '--out', o, *FT, '--init', tmp_path/'holes.pt', '--allow-missing-keys')
    assert rc == 0, err
    rep = json.loads((o/'load_report.json').read_text())
    assert len(rep['missing']) == len(enc) - len(keep)


# ------------------------------------------------------------------ the fine-tuning run guard

def test_finetune_run_guard(base, tmp_path):
    run = base/'ft'
    before = (run/'finetune.json').read_text()
    fails(['finetune', '--data', base/'ds', '--init', 'none', '--label-fraction', '1', '--out', run, *FT],
          str(run), 'label_fraction 0.5 there, 1.0 now', out=run)
    fails(['finetune', '--data', base/'ds', '--init', base/'final.pt', '--label-fraction', '0.5', '--out', run, *FT],
          'init_fingerprint', out=run)
    fails(['finetune', '--data', base/'ds', '--init', 'none', '--label-fraction', '0.5', '--seed', '3', '--out', run, *FT],
          'seed', out=run)
    assert (run/'finetune.json').read_text() == before   # the record still tells the truth
    # the same run again is recognised as finished
    rc, out, _ = cli('finetune', '--data', base/'ds', '--init', 'none', '--label-fraction', '0.5', '--out', run, *FT)
    assert rc == 0 and 'skipping' in out
    # a pretraining run folder is not a fine-tuning run
    pre_files = sorted(p.name for p in (base/'pre').iterdir())
    fails(['finetune', '--data', base/'ds', '--out', base/'pre', *FT], 'pre', "'vectorpose' run", out=base/'pre')
    assert sorted(p.name for p in (base/'pre').iterdir()) == pre_files
    # same init path, other bytes: refused too (the fingerprint is of the file, not its name)
    init = tmp_path/'final.pt'; shutil.copy(base/'final.pt', init)
    o = tmp_path/'r'
    assert cli('finetune', '--data', base/'ds', '--init', init, '--label-fraction', '0.5', '--out', o, *FT)[0] == 0
    ck = load_checkpoint(init); ck['transfer']['encoder'] = {k: v + 1 if v.is_floating_point() else v for k, v in ck['transfer']['encoder'].items()}
    save_checkpoint(init, **ck)
    fails(['finetune', '--data', base/'ds', '--init', init, '--label-fraction', '0.5', '--out', o, *FT], 'init_fingerprint', out=o)


# ------------------------------------------------------------------ small and multi-channel datasets

def test_four_case_dataset_finetunes(tmp_path):
    data = tmp_path/'p4'
    write_phantom_dataset(data, n=4, n_test=0, seed=1, shape=SHAPE, spacing=SP)   # what `ssl3d phantoms --n 4` writes
    rc, out, err = cli('finetune', '--data', data, '--out', tmp_path/'run', '--label-fraction', '1', *FT)
    assert rc == 0, err
    assert 'leave the val split empty' in err and '5 cases give it one' in err
    sp = json.loads((data/'ssl3d_splits'/'seed0.json').read_text())
    assert len(sp['train']) == 4 and sp['val'] == [] and sp['test'] == []
    best = load_checkpoint(tmp_path/'run'/'best.pt')
    assert best['selection'].startswith('last') and best['step'] == 2
    fails(['evaluate', '--data', data, '--model', tmp_path/'run', '--out', tmp_path/'ev'], "no labelled cases in split 'test'", out=tmp_path/'ev')
    assert cli('evaluate', '--data', data, '--model', tmp_path/'run', '--out', tmp_path/'ev', '--split', 'train', '--no-predictions')[0] == 0


def _two_channel(base, name):
    def mutate(r):
        for k in range(7):
            for p in (img(r, k), r/'imagesTs'/f'abdomen_{k:04d}.nii.gz'):
                if p.exists(): rewrite(p, lambda a: np.stack([a, a // 2], -1))
        edit_json(r, lambda d: d.update(modality={'0': 'CT', '1': 'CT'}))
    return variant(base, name, mutate)


def test_multi_channel_data(base, tmp_path):
    data = _two_channel(base, 'two_channel')
    rc, _, err = cli('finetune', '--data', data, '--init', 'none', '--label-fraction', '0.5', '--out', tmp_path/'run', *FT)
    assert rc == 0, err
    best = load_checkpoint(tmp_path/'run'/'best.pt')
    w = next(v for k, v in best['model'].items() if k.startswith('encoder.') and v.ndim == 5)
    assert best['backbone']['in_channels'] == 2 and w.shape[1] == 2
    rc, _, err = cli('evaluate', '--data', data, '--model', tmp_path/'run', '--out', tmp_path/'ev', '--split', 'val')
    assert rc == 0, err
    # channels that do not match the network: a clear error, not a conv RuntimeError
    fails(['finetune', '--data', data, '--init', base/'final.pt', '--out', tmp_path/'r2', *FT], 'final.pt', '1 input channel(s)', 'has 2', out=tmp_path/'r2')
    fails(['evaluate', '--data', data, '--model', base/'ft', '--out', tmp_path/'e2', '--split', 'val'], 'takes 1 input channel(s)', 'has 2', out=tmp_path/'e2')
    fails(['evaluate', '--data', base/'ds', '--model', tmp_path/'run', '--out', tmp_path/'e3', '--split', 'val'], 'takes 2 input channel(s)', 'has 1', out=tmp_path/'e3')


# ------------------------------------------------------------------ outputs: read-only, full disk, tmp files

def test_read_only_output(base, tmp_path):
    blocker = tmp_path/'a_file'; blocker.write_text('x')   # a folder that cannot be created (works as root too)
    for cmd in (['finetune', '--data', base/'ds', *FT], ['evaluate', '--data', base/'ds', '--model', base/'ft'],
                ['pretrain', '--data', base/'ds', '--preset', 'cpu-small', '--steps', '1', '--device', 'cpu']):
        fails(cmd + ['--out', blocker/'out'], 'a_file/out', 'not writable')
    fails(['export', '--model', base/'final.pt', '--out', blocker/'out'/'enc.pt'], 'a_file/out', 'not writable')
    if os.geteuid() != 0:   # permissions do not bind root
        ro = tmp_path/'ro'; ro.mkdir(); ro.chmod(0o555)
        try: fails(['evaluate', '--data', base/'ds', '--model', base/'ft', '--out', ro], 'ro', 'not writable')
        finally: ro.chmod(0o755)


def test_full_disk(base, tmp_path, monkeypatch):
    real = torch.save
    def full(obj, f, *a, **k):   # torch's own words on a full disk, after half a file
        Path(f).write_bytes(b'PK\x03\x04 half a checkpoint')
        raise RuntimeError('[enforce fail at inline_container.cc:603] . unexpected pos 3904 vs 3802')
    monkeypatch.setattr(torch, 'save', full)
    o = tmp_path/'run'
    fails(['finetune', '--data', base/'ds', '--label-fraction', '0.5', '--out', o, *FT], 'cannot write', 'disk may be full', '.pt', out=o)
    assert not list(o.glob('*.pt'))
    monkeypatch.setattr(torch, 'save', real)
    def nospace(self, *a, **k): raise OSError(28, 'No space left on device')
    monkeypatch.setattr(Path, 'write_bytes', nospace)
    fails(['evaluate', '--data', base/'ds', '--model', base/'ft', '--out', tmp_path/'ev', '--split', 'val'],
          'ev/predictions/abdomen_', 'No space left on device', out=tmp_path/'ev')


def test_stale_tmp_files_are_removed(base, tmp_path):
    o = tmp_path/'run'; o.mkdir()
    for n in ('.checkpoint.pt.k1l2.tmp', '.best.pt.z9.tmp'): (o/n).write_bytes(b'killed mid-save')
    rc, _, err = cli('finetune', '--data', base/'ds', '--label-fraction', '0.5', '--out', o, *FT)
    assert rc == 0, err
    assert not list(o.glob('*.tmp')) and 'removed a temporary file' in err
    intact(o)
    pred = tmp_path/'ev'/'predictions'; pred.mkdir(parents=True)
    (pred/'.abdomen_0000.nii.gz.q1.tmp').write_bytes(b'killed mid-write')
    assert cli('evaluate', '--data', base/'ds', '--model', o, '--out', tmp_path/'ev', '--split', 'val')[0] == 0
    assert not list(pred.glob('.*.tmp')) and list(pred.glob('*.nii.gz'))
    intact(tmp_path/'ev')


# ------------------------------------------------------------------ messages

def test_messages(base, tmp_path, monkeypatch):
    # a corrupt image is not blamed on the split
    r = variant(base, 'msg_missing', lambda r: img(r, 0).unlink())
    line = fails(['evaluate', '--data', r, '--model', base/'ft', '--out', tmp_path/'e'], 'abdomen_0000.nii.gz', 'not found')
    assert 'split does not match' not in line
    line = fails(['evaluate', '--data', variant(base, 'msg_99', lambda r: rewrite(lab(r, 0), lambda a: np.where(a == 1, 14, a))),
                  '--model', base/'ft', '--out', tmp_path/'e', '--split', 'all'], '[14]', 'the model')
    assert 'the dataset declares' not in line
    # an all-background label map is warned about
    rc, _, err = cli('data', variant(base, 'msg_empty_label', lambda r: rewrite(lab(r), lambda a: a * 0)))
    assert rc == 0 and 'all background' in err and 'abdomen_0001' in err
    # an unforeseen exception: one line; --debug keeps the traceback
    import ssl3d.finetune as ft
    def bug(*a, **k): raise KeyError('surprise')
    monkeypatch.setattr(ft, 'finetune', bug)
    fails(['finetune', '--data', base/'ds', '--out', tmp_path/'x'], 'KeyError', 'surprise', '--debug')
    with pytest.raises(KeyError): main(['--debug', 'finetune', '--data', str(base/'ds'), '--out', str(tmp_path/'x')])


def test_mixed_spacing_pool_warns(base, tmp_path):
    from ssl3d.pretrain import pretrain_subjects
    r = variant(base, 'mixed', lambda r: rewrite(img(r, 2), lambda a: a, affine=np.diag([3., 3., 3., 1.])))
    rewrite(lab(r, 2), lambda a: a, affine=np.diag([3., 3., 3., 1.]))
    with pytest.warns(UserWarning, match='mixes 2 voxel spacings'): pretrain_subjects(r, spacing=None)


# ------------------------------------------------------------------ grid: kill the main process, no orphans, resume

def _nap_notebook(path):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1\nnap = 0.0", metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell(
                    "import os, time\nopen(f'pid_{os.getpid()}_{os.getppid()}', 'w').close()\ntime.sleep(nap)\n"
                    "from ssl3d.experiments import write_results\n"
                    "write_results([dict(method='m', dataset='d', label_fraction=1.0, seed=0, **{'class': 'all'}, metric='x', value=x)], "
                    "'results.csv')")]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, path)
    return path


def _alive(pid):
    try: os.kill(pid, 0)
    except ProcessLookupError: return False
    try:  # a zombie is dead
        return Path(f'/proc/{pid}/stat').read_text().split(')')[-1].split()[0] != 'Z'
    except OSError: return True


@pytest.mark.slow
def test_grid_kill_and_resume_leaves_no_orphans(tmp_path):
    nb = _nap_notebook(tmp_path/'nap.ipynb')
    run = tmp_path/'run'
    cmd = [sys.executable, '-c', 'import sys; from ssl3d.cli import main; sys.exit(main(sys.argv[1:]))', 'grid', str(nb), '--out', str(run), '--axis', 'x', '1', '2', '--processes', '2']
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).resolve().parents[1])}
    p = subprocess.Popen(cmd + ['-p', 'nap', '600'], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kernels, workers = [], []
    try:
        t0 = time.time()
        while len(list(run.glob('x=*/pid_*'))) < 2:
            assert time.time() - t0 < 120 and p.poll() is None, 'the grid did not start its notebooks'
            time.sleep(0.5)
        kernels += [int(f.name.split('_')[1]) for f in run.glob('x=*/pid_*')]
        workers += [int(f.name.split('_')[2]) for f in run.glob('x=*/pid_*')]
        # a second grid on the same folder meanwhile: each cell is locked, it waits for nobody and fails clearly
        rc, out, err = cli('grid', nb, '--out', run, '--axis', 'x', '1', '2', '--processes', '1')
        assert rc == 1 and out.count('busy') == 2
        assert os.getpid() not in workers and p.pid not in workers and all(map(_alive, kernels + workers))
        os.kill(p.pid, signal.SIGKILL); p.wait()
        t0 = time.time()
        while any(map(_alive, kernels + workers)) and time.time() - t0 < 30: time.sleep(0.5)
        assert not any(map(_alive, workers)), 'grid workers outlived their parent'
        assert not any(map(_alive, kernels)), 'notebook kernels outlived their worker'
    finally:   # on failure, end what this test started (by pid) so no sleeper outlives it
        if p.poll() is None: p.kill()
        for pid in kernels + workers:
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError): os.kill(pid, signal.SIGKILL)
    for f in run.glob('x=*/pid_*'): f.unlink()
    rc, out, err = cli('grid', nb, '--out', run, '--axis', 'x', '1', '2', '--processes', '2', '-p', 'nap', '0')   # resume
    assert rc == 0, err
    assert '2 ran' in out and all((run/f'x={x}'/'DONE').exists() for x in (1, 2))
