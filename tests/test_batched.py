"""The batched device path (ssl3d.batched, prepare_raw/prepare_batch): equivalence with the per-item path for
VectorPOSE and Models Genesis (exact parts and the statistics of the shuffle) and the two-view methods, scaled views, exact resume of a
batched run, `ssl3d pretrain` choosing the path (and --no-batched), and benchmarks/gpu_check.sh --device cpu --tiny."""
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch

from ssl3d.data import preprocessing
from ssl3d.phantoms import make_phantom, write_phantom_dataset
from ssl3d.methods.core import (PretextDataset, BatchedPretextDataset, RAW_KEY, build_method, has_batched)
from ssl3d.patches import collate
from ssl3d.methods.vectorpose import VectorPOSE
from ssl3d.methods.models_genesis import ModelsGenesis
from ssl3d.train import Trainer, train_config
from ssl3d.checkpoints import load_checkpoint
from ssl3d.batched import DeviceVolumes
import ssl3d.pretrain  # registers the command
from ssl3d.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def subjects():
    return [preprocessing('ct')(make_phantom('abdomen', seed=s, shape=(56, 56, 40))) for s in range(2)]


def both(method, subjects, n=8, seed=5):
    "The per-item batch and the batched path's batch of the same n items."
    ref = collate([PretextDataset(subjects, method, 16, seed)[i] for i in range(n)])
    raw = collate([BatchedPretextDataset(subjects, method, 16, seed)[i] for i in range(n)])
    return ref, raw, method.prepare_batch({k: v for k, v in raw.items() if k != RAW_KEY})


@pytest.mark.parametrize('name', ['vectorpose', 'models_genesis'])
def test_fixed_seed_equivalence(subjects, name):
    m = build_method(name, dict(shuffle_windows=300), preset='tiny')
    assert has_batched(m)
    ref, raw, got = both(m, subjects)
    assert set(got) == set(ref)
    for k in ('geometry', 'vp_target', 'landmark', 'radius', 'vp_clamped'):
        if k in ref: assert torch.equal(got[k], ref[k]), k
    torch.testing.assert_close(got['clean'], ref['clean'], atol=1e-5, rtol=0)
    if 'edges' in ref: torch.testing.assert_close(got['edges'], ref['edges'], atol=1e-4, rtol=0)
    plain = ~raw['mg_shuffle'][:, 0].bool()  # items whose draw skipped the shuffle: exact up to the Bezier table
    assert plain.any()
    torch.testing.assert_close(got['input'][plain], ref['input'][plain], atol=2e-3, rtol=0)


@pytest.mark.parametrize('name', ['pgl', 'byol', 'moco'])
def test_two_view_equivalence(subjects, name):
    "Every step of the two-view pipeline has an exact or float-rounding reference: the batches agree to rounding."
    import ssl3d.methods.pgl, ssl3d.methods.moco  # register
    m = build_method(name, dict(backbone='tiny', input_size=(32, 32, 16), noise_p=0.5, blur_p=0.5, hidden=16, out_dim=8),
                     preset='cpu-small')
    assert has_batched(m)
    ref, raw, got = both(m, subjects, n=8)
    assert set(got) == set(ref) == {'view1', 'view2', 'geom1', 'geom2'}
    for k in ('geom1', 'geom2'): assert torch.equal(got[k], ref[k])
    for k in ('view1', 'view2'): torch.testing.assert_close(got[k], ref[k], atol=2e-5, rtol=0)
    drawn = torch.cat([raw['aug1'], raw['aug2']])[:, [0, 3, 5, 7]].sum(0)
    assert (drawn > 0).all(), drawn  # noise, blur, brightness and gamma each drawn at least once


def test_scaled_views_equivalence(subjects):
    m = build_method('vectorpose', dict(scale_range=(0.8, 1.25), shuffle_p=0.0, bezier_p=0.0, painting_p=0.0), preset='tiny')
    ref, raw, got = both(m, subjects, n=6)
    assert raw['patch'].shape[-1] == 43  # ceil(32 * 1.25) + 3, fixed so a batch stacks
    torch.testing.assert_close(got['clean'], ref['clean'], atol=1e-5, rtol=0)
    torch.testing.assert_close(got['input'], ref['input'], atol=1e-5, rtol=0)  # no corruption: input = clean


def test_shuffled_inputs_have_the_reference_statistics(subjects):
    "Shuffle always on: the inputs differ voxel-wise, but the changed fraction and mean change agree (statistical)."
    m = build_method('models_genesis', dict(shuffle_p=1.0, bezier_p=0.0, painting_p=0.0, shuffle_windows=400), preset='tiny')
    ref, raw, got = both(m, subjects, n=24)
    assert not torch.equal(got['input'], ref['input'])
    fr, fb = (ref['input'] != ref['clean']).float().mean(), (got['input'] != got['clean']).float().mean()
    mr, mb = (ref['input'] - ref['clean']).abs().mean(), (got['input'] - got['clean']).abs().mean()
    assert abs(fr / fb - 1) < 0.05 and abs(mr / mb - 1) < 0.05, (fr, fb, mr, mb)
    # a shuffle only moves values: per item the value range stays the clean crop's
    assert torch.all(got['input'].flatten(1).amax(1) <= got['clean'].flatten(1).amax(1))


def test_device_volumes_give_the_same_batch(subjects):
    m = build_method('vectorpose', preset='tiny')
    _, _, got = both(m, subjects, n=4)
    m.device_volumes = DeviceVolumes(subjects)
    ds = BatchedPretextDataset(subjects, m, 16, 5, volumes_on_device=True)
    raw = collate([ds[i] for i in range(4)])
    assert 'patch' not in raw and raw['volume_index'].tolist() == [0, 1, 0, 1]
    dev = m.prepare_batch({k: v for k, v in raw.items() if k != RAW_KEY})
    for k in got: assert torch.equal(dev[k], got[k]), k


def _run(out, subjects, stop_at=None, workers=0):
    torch.manual_seed(0)
    m = build_method('vectorpose', dict(shuffle_windows=200, bezier_points=1000), preset='tiny')
    ds = BatchedPretextDataset(subjects, m, samples_per_volume=4, seed=1)
    cfg = train_config(steps=6, batch_size=2, lr=1e-3, log_every=2, ckpt_every=2, seed=3, num_workers=workers)
    Trainer(m, ds, cfg, out).fit(stop_at=stop_at)
    return m


@pytest.mark.slow
def test_batched_resume_is_exact_and_workers_agree(subjects, tmp_path):
    ref = _run(tmp_path / 'straight', subjects)
    _run(tmp_path / 'cut', subjects, stop_at=3)
    assert load_checkpoint(tmp_path / 'cut' / 'checkpoint.pt')['step'] == 3
    resumed = _run(tmp_path / 'cut', subjects)
    a, b = ref.state_dict(), resumed.state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    logs = [(p / 'log.csv').read_text() for p in (tmp_path / 'straight', tmp_path / 'cut')]
    assert logs[0] == logs[1]
    # a DataLoader worker (the raw items pickled to another process) gives the same run
    worker = _run(tmp_path / 'worker', subjects, workers=1).state_dict()
    assert [k for k in a if not torch.equal(a[k], worker[k])] == []


@pytest.mark.slow
def test_cli_uses_the_batched_path_and_no_batched(tmp_path):
    data = tmp_path / 'data'
    write_phantom_dataset(data, n=2, n_test=0, shape=(48, 48, 32), seed=0)
    base = ['pretrain', '--data', str(data), '--method', 'vectorpose', '--steps', '2', '--preset', 'tiny', '--batch-size', '2',
            '--train-set', 'log_every=1', 'ckpt_every=1']
    for flags, want in (([], True), (['--no-batched'], False)):
        out = tmp_path / ('b' if want else 'p')
        assert main([*base, '--out', str(out), *flags]) == 0
        prov = json.loads((out / 'config.json').read_text())['provenance']
        assert prov['pipeline'] == dict(batched=want, volumes_on_device=False)
        assert load_checkpoint(out / 'final.pt')['step'] == 2


@pytest.mark.slow
def test_gpu_check_cpu_tiny(tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg', 'PYTHONWARNINGS': 'ignore', 'PYTHON': sys.executable}
    r = subprocess.run([str(ROOT / 'benchmarks' / 'gpu_check.sh'), '--device', 'cpu', '--tiny', '--out', str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rep = json.loads((tmp_path / 'report.json').read_text())
    rows = {x['method']: x for x in rep['methods']}
    assert {'vectorpose', 'models_genesis'} <= set(rows) and 'toy' not in rows
    assert rows['vectorpose']['batched'] and rows['models_genesis']['batched']
    for x in rows.values():
        assert x['steps_per_s'] > 0 and 0 <= x['data_wait'] <= 1 and x['gpu_mem_gib'] is None and x['step_vs_bare'] > 0
    assert rep['label_efficiency']['ok'] and rep['label_efficiency']['results_rows'] > 0
    md = (tmp_path / 'report.md').read_text()
    assert '| method | preset | batched |' in md and 'Label efficiency' in md


def test_errors_name_the_problem(subjects):
    from ssl3d.batched import view_patch_box, mg_corruption_params, intensity_params
    from ssl3d.geometry import ViewGeometry
    from ssl3d.core import DataError, Ssl3dError
    import torchio as tio
    g = ViewGeometry((40, 40, 40), box_start=(1.5, 2, 3), box_size=(20, 20, 20), out_size=(16, 16, 16))
    with pytest.raises(Ssl3dError, match='smaller than the view box'): view_patch_box(g, (8, 8, 8))
    with pytest.raises(Ssl3dError, match='unsupported transform RandomFlip'): mg_corruption_params(tio.Compose([tio.RandomFlip()]), (8, 8, 8))
    with pytest.raises(Ssl3dError, match='unsupported transform RandomNoise'): intensity_params(tio.Compose([tio.RandomNoise()]))
    m = build_method('vectorpose', preset='tiny')
    raw = collate([BatchedPretextDataset(subjects, m, 2, 0, volumes_on_device=True)[i] for i in range(2)])
    with pytest.raises(Ssl3dError, match='needs method.device_volumes'): m.prepare_batch({k: v for k, v in raw.items() if k != RAW_KEY})
    raw = collate([BatchedPretextDataset(subjects, m, 2, 0)[i] for i in range(2)])
    raw['patch'] = raw['patch'] * 3  # not preprocessed to [0, 1]
    with pytest.raises(DataError, match=r'crop intensities span .* need \[0, 1\]'): m.prepare_batch({k: v for k, v in raw.items() if k != RAW_KEY})
    with pytest.raises(Ssl3dError, match='has no batched path'): BatchedPretextDataset(subjects, build_method('toy', preset='cpu-small'))


def test_cli_refuses_a_bad_volumes_on_device_value(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(['pretrain', '--data', str(tmp_path), '--out', str(tmp_path / 'o'), '--volumes-on-device', 'maybe'])
    assert "invalid choice: 'maybe'" in capsys.readouterr().err
