"""ssl3d.pretrain + the single-view methods (VectorPOSE, Models Genesis): CLI end to end on a tiny phantom
dataset, resume, provenance, bad flags; method known answers (anatomy targets invariant to flips, edges,
corruption on/off, gradients, ablation terms)."""
import dataclasses, json, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
import torchio as tio

from ssl3d.core import Ssl3dError
from ssl3d.data import preprocessing
from ssl3d.phantoms import make_phantom, write_phantom_dataset
from ssl3d.methods.core import build_method
from ssl3d.patches import collate
from ssl3d.methods.vectorpose import ABLATIONS, VectorPOSE, ablation_config
from ssl3d.targets import edge_target
from ssl3d.checkpoints import load_checkpoint
import ssl3d.pretrain  # registers the command
from ssl3d.cli import main

TINY = ['--preset', 'tiny', '--batch-size', '2', '--train-set', 'log_every=1', 'ckpt_every=2']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp('ph')
    write_phantom_dataset(d, n=3, n_test=1, n_unlabelled=1, shape=(48, 48, 32), seed=0)
    return d


@pytest.fixture(scope='module')
def subj():
    return preprocessing('ct')(make_phantom('abdomen', seed=1, shape=(48, 48, 40)))


@pytest.mark.slow
def test_cli_end_to_end_and_resume(data, tmp_path):
    out = tmp_path / 'run'
    rc = main(['pretrain', '--data', str(data), '--method', 'vectorpose', '--out', str(out), '--steps', '3', '--crop-size', '32', *TINY])
    assert rc == 0
    assert {'final.pt', 'config.json', 'log.csv', 'checkpoint.pt'} <= {p.name for p in out.iterdir()}
    ck = load_checkpoint(out / 'final.pt')
    prov = ck['provenance']
    assert prov['method'] == 'vectorpose'
    assert prov['backbone'] == dict(preset='tiny', depth=None, base_width=None, in_channels=1, layout='standard')
    assert prov['config']['crop_size'] == 32 and prov['config']['n_vectors'] == 9
    assert len(prov['dataset_fingerprint']) == 64
    assert set(ck['transfer']) == {'encoder', 'decoder'}
    assert prov['data']['n_subjects'] == 4  # 3 training + 1 unlabelled; the test case is never used
    # same command with more steps continues from the checkpoint
    with pytest.warns(UserWarning, match='resuming with changed settings'):
        rc = main(['pretrain', '--data', str(data), '--method', 'vectorpose', '--out', str(out), '--steps', '4', '--crop-size', '32', *TINY])
    assert rc == 0
    steps = [int(l.split(',')[0]) for l in (out / 'log.csv').read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4]
    assert load_checkpoint(out / 'final.pt')['step'] == 4


def test_cli_models_genesis_and_set(data, tmp_path):
    out = tmp_path / 'mg'
    rc = main(['pretrain', '--data', str(data), '--method', 'models_genesis', '--out', str(out), '--steps', '2',
               '--set', 'loss=l1', 'bezier_points=1000', *TINY])
    assert rc == 0
    prov = load_checkpoint(out / 'final.pt')['provenance']
    assert prov['method'] == 'models_genesis' and prov['config']['loss'] == 'l1' and prov['config']['bezier_points'] == 1000
    assert 'l1' in (out / 'log.csv').read_text().splitlines()[0]


def test_cli_bad_input(data, tmp_path, capsys):
    base = ['pretrain', '--data', str(data), '--out', str(tmp_path / 'x'), *TINY]
    assert main(base + ['--method', 'models_genesis', '--n-vectors', '5']) == 2
    assert "has no field(s) ['n_vectors']" in capsys.readouterr().err
    assert main(base + ['--set', 'crop_size=40']) == 2
    assert 'crop_size=40' in capsys.readouterr().err
    assert main(base + ['--set', 'eta=abc']) == 2
    assert "eta='abc'" in capsys.readouterr().err
    assert main(base + ['--preset', 'huge']) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert main(['pretrain', '--data', str(tmp_path / 'missing'), '--out', str(tmp_path / 'y')]) == 2
    assert 'dataset not found' in capsys.readouterr().err
    assert not (tmp_path / 'y').exists()  # nothing written for a run that cannot start


def _cli(*args):
    code = f'import sys; from ssl3d.cli import main; sys.exit(main({list(args)!r}))'
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)


def test_help_fits_one_screen_and_show_config_lists_method_fields():
    r = _cli('pretrain', '--help')
    assert r.returncode == 0 and len(r.stdout.splitlines()) <= 60 and '--show-config' in r.stdout and '--set' in r.stdout
    r = _cli('pretrain', '--method', 'vectorpose', '--preset', 'tiny', '--n-vectors', '5', '--set', 'eta=0.25', '--show-config')
    cfg = json.loads(r.stdout)
    assert (cfg['method'], cfg['preset']) == ('vectorpose', 'tiny')
    assert cfg['config']['n_vectors'] == 5 and cfg['config']['eta'] == 0.25       # a field flag and --set both apply
    for field in ('crop_size', 'lam', 'alpha', 'index_mode', 'scale_range', 'bezier_points'): assert field in cfg['config'], field
    assert 'steps' in cfg['train'] and 'lr' in cfg['train']
    r = _cli('pretrain', '--method', 'vectorpose', '--out', 'x')
    assert r.returncode == 2 and 'needs --data' in r.stderr and 'Traceback' not in r.stderr


def test_anatomy_targets_invariant_to_flips(subj):
    m = build_method('vectorpose', dict(eta=0.0), preset='tiny')
    items = [m.prepare(subj, np.random.default_rng(s)) for s in range(30)]
    from ssl3d.geometry import from_tensor
    flipped = [g for it in items for g in [from_tensor(it['geometry'])] if any(g.flips) or g.rot[0]]
    assert flipped, 'no flipped/rotated crop drawn'
    for g in flipped:  # recompute with no flips: identical (anatomy mode)
        plain = dataclasses.replace(g, flips=(False,) * 3, rot=(0, (0, 1)))
        start, size = np.zeros(3), np.asarray(subj['image'].shape[1:], float)
        L = start + size / 2
        a = m.targets(g.box_start, g.box_size, size, A=g.A, landmark=L)['vp_target']
        b = m.targets(plain.box_start, plain.box_size, size, A=plain.A, landmark=L)['vp_target']
        torch.testing.assert_close(a, b)
    # and the targets of prepare match that recomputation (eta=0 -> landmark = body-box centre)
    it = items[0]
    torch.testing.assert_close(it['landmark'], torch.as_tensor(np.asarray(subj['image'].shape[1:], float) / 2))


def test_edges_and_corruption_switch(subj):
    m0 = build_method('vectorpose', dict(shuffle_p=0., bezier_p=0., painting_p=0.), preset='tiny')
    it = m0.prepare(subj, np.random.default_rng(0))
    torch.testing.assert_close(it['edges'], edge_target(it['clean']))
    assert torch.equal(it['input'], it['clean'])
    m1 = build_method('vectorpose', dict(shuffle_p=1., bezier_p=1., painting_p=1.), preset='tiny')
    it1 = m1.prepare(subj, np.random.default_rng(0))
    assert torch.equal(it1['clean'], it['clean'])
    assert not torch.equal(it1['input'], it1['clean'])
    assert 0 <= float(it1['input'].min()) and float(it1['input'].max()) <= 1


def test_out_of_range_intensity_is_refused():
    m = build_method('vectorpose', preset='tiny')
    s = tio.Subject(image=tio.ScalarImage(tensor=torch.full((1, 40, 40, 40), 300.)), id='raw')
    with pytest.raises(Ssl3dError, match='subject raw: crop intensities span'):
        m.prepare(s, np.random.default_rng(0))


@pytest.mark.parametrize('name', ['vectorpose', 'models_genesis'])
def test_gradients_reach_encoder_and_decoder(subj, name):
    torch.manual_seed(0)
    m = build_method(name, preset='tiny')
    b = collate([m.prepare(subj, np.random.default_rng(i)) for i in range(2)])
    m(b)['loss'].backward()
    for part in (m.encoder, m.decoder):
        ws = [p for p in part.parameters() if p.ndim > 1]
        assert ws and all(p.grad is not None and p.grad.abs().sum() > 0 for p in ws)


@pytest.mark.parametrize('name', list(ABLATIONS))
def test_ablation_active_terms(subj, name):
    torch.manual_seed(0)
    m = VectorPOSE(ablation_config(name, 'tiny', shuffle_p=0., bezier_p=0., painting_p=0.))
    b = collate([m.prepare(subj, np.random.default_rng(i)) for i in range(2)])
    o = m(b)
    has_vp, has_edge = name not in ('voxel', '+boundary'), name != 'voxel'
    assert (m.vp_head is not None) == has_vp
    assert m.bfr_head.out_channels == (2 if has_edge else 1)
    assert (float(o['vp']) > 0) == has_vp
    assert (float(o['boundary']) > 0) == has_edge
    lam = 0.5 if has_vp else 1.0
    torch.testing.assert_close(o['loss'], lam * (o['voxel'] + (5.0 if has_edge else 0.) * o['boundary']) + (1 - lam) * o['vp'])
    if has_vp: assert b['vp_target'].shape[1] == {'+centre': 1, '+1corner': 2, '+4corners': 5, '+8corners': 9}[name]
