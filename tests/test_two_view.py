"""Two-view methods (PGL, BYOL, MoCo v2) beyond the notebooks: DDP queue gathering with 2 processes, exact resume of
teacher and queue through `Trainer`, the final checkpoint's transfer, bad configs, and `ssl3d.pretrain` when present."""
import os, tempfile
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchio as tio
from ssl3d.core import Ssl3dError
from ssl3d.methods.core import build_method, PretextDataset, METHODS
from ssl3d.models import build_backbone
from ssl3d.train import Trainer, train_config
from ssl3d.checkpoints import load_checkpoint
import ssl3d.methods.pgl, ssl3d.methods.moco  # noqa: F401

TINY = dict(backbone='tiny', input_size=(32, 32, 8), hidden=16, out_dim=8)


def _subjects(n=3, shape=(48, 44, 20)):
    out = []
    for s in range(n):
        g = torch.Generator().manual_seed(s)
        v = torch.nn.functional.avg_pool3d(torch.rand(1, 1, *shape, generator=g), 5, 1, 2)[0]
        out.append(tio.Subject(image=tio.ScalarImage(tensor=v), id=f's{s}'))
    return out


def test_registered_with_presets():
    for name in ('pgl', 'byol', 'moco'):
        cls = METHODS.get(name)
        assert {'paper', 'cpu-small'} <= set(cls.presets()) and {'paper', 'cpu-small'} <= set(cls.TRAIN_PRESETS)
        m = build_method(name, preset='cpu-small')
        assert m.backbone_kwargs['layout'] == 'pgl' and m.transfer()['decoder'] is None


def test_bad_configs_name_the_field():
    with pytest.raises(Ssl3dError, match="pooling='avg'"): build_method('pgl', {**TINY, 'pooling': 'avg'})
    with pytest.raises(Ssl3dError, match='input_size'): build_method('byol', {**TINY, 'input_size': (30, 32, 8)})
    with pytest.raises(Ssl3dError, match='tau=0'): build_method('moco', {**TINY, 'tau': 0})
    with pytest.raises(Ssl3dError, match='momentum=1.5'): build_method('pgl', {**TINY, 'momentum': 1.5})
    with pytest.raises(Ssl3dError, match='min_overlap'): build_method('pgl', {**TINY, 'min_overlap': 1.0})
    with pytest.raises(Ssl3dError, match='unknown key'): build_method('moco', {'queue': 3})


@pytest.mark.slow
@pytest.mark.parametrize('name', ['pgl', 'byol', 'moco'])
def test_resume_is_exact_and_final_transfers_encoder(name):
    over = {**TINY, 'queue_size': 16} if name == 'moco' else TINY
    subjects = _subjects()
    cfg = train_config('cpu-small', steps=4, batch_size=2, ckpt_every=2, log_every=1, progress=False)
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0); a = build_method(name, over)
        Trainer(a, PretextDataset(subjects, a, 2, seed=0), cfg, f'{d}/a').fit()
        torch.manual_seed(0); b = build_method(name, over)
        Trainer(b, PretextDataset(subjects, b, 2, seed=0), cfg, f'{d}/b').fit(stop_at=2)
        torch.manual_seed(1); c = build_method(name, over)  # fresh weights: everything must come from the checkpoint
        Trainer(c, PretextDataset(subjects, c, 2, seed=0), cfg, f'{d}/b').fit()
        sa, sc = a.state_dict(), c.state_dict()
        assert any(k.startswith('teacher.') for k in sa)
        for k in sa: torch.testing.assert_close(sa[k], sc[k], rtol=0, atol=0, msg=k)
        assert not torch.equal(sa['teacher.encoder.conv1.weight'], sa['encoder.conv1.weight'])  # the teacher lags
        final = load_checkpoint(f'{d}/a/final.pt')
        assert final['transfer']['decoder'] is None
        enc, _ = build_backbone(**a.backbone_kwargs)
        enc.load_state_dict(final['transfer']['encoder'], strict=True)
        if name == 'moco': assert int(sa['queue_ptr']) == 4 * 2 % 16


def _ddp_worker(rank, world, init_file, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # same initial queue on every rank (as DDP's broadcast would make it)
        m = build_method('moco', {**TINY, 'queue_size': 6, 'out_dim': 2})
        m._pending = torch.tensor([[1.0, rank], [2.0, rank]])  # rank-specific keys
        m.after_step(1, 10)
        torch.save({'queue': m.queue, 'ptr': m.queue_ptr}, os.path.join(out_dir, f'q{rank}.pt'))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_moco_gathers_keys_across_ranks():
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_ddp_worker, args=(2, os.path.join(d, 'init'), d), nprocs=2, join=True)
        q0, q1 = (torch.load(os.path.join(d, f'q{r}.pt')) for r in range(2))
    torch.testing.assert_close(q0['queue'], q1['queue'], rtol=0, atol=0)
    assert int(q0['ptr']) == int(q1['ptr']) == 4
    keys = torch.nn.functional.normalize(torch.tensor([[1., 0], [2, 0], [1, 1], [2, 1]]), dim=1)
    torch.testing.assert_close(q0['queue'][:4], keys)  # rank 0's keys, then rank 1's, FIFO from the pointer


@pytest.mark.slow
@pytest.mark.parametrize('name', ['pgl', 'byol', 'moco'])
def test_pretrain_runs_registered_method(name):
    pretrain_mod = pytest.importorskip('ssl3d.pretrain')
    from ssl3d.phantoms import write_phantom_dataset
    with tempfile.TemporaryDirectory() as d:
        data = write_phantom_dataset(f'{d}/data', n=2, n_test=1, seed=0, shape=(64, 64, 32))
        over = {'input_size': (32, 32, 16)}
        if name == 'moco': over['queue_size'] = 16
        final = pretrain_mod.pretrain(data, method=name, out_dir=f'{d}/run', preset='cpu-small', steps=2,
                                      method_overrides=over, train_overrides={'batch_size': 2})
        ck = load_checkpoint(final)
        assert ck['provenance']['method'] == name and ck['transfer']['decoder'] is None
        enc, _ = build_backbone(**ck['provenance']['backbone'])
        enc.load_state_dict(ck['transfer']['encoder'], strict=True)


def _phantom_run(name, steps, n=6, seed=0):
    "A cpu-small `Trainer` run of `name` on phantoms (32×32×16 views); the per-step losses."
    from ssl3d.data import preprocessing
    from ssl3d.phantoms import make_phantom
    prep = preprocessing('ct')
    pool = [prep(make_phantom(seed=s, shape=(64, 64, 32))) for s in range(n)]
    torch.manual_seed(seed)
    m = build_method(name, {'input_size': (32, 32, 16)}, preset='cpu-small')
    cfg = train_config('cpu-small', **{**type(m).TRAIN_PRESETS['cpu-small'], 'steps': steps, 'ckpt_every': 0,
                                       'progress': False, 'seed': seed})
    with tempfile.TemporaryDirectory() as d:
        hist = Trainer(m, PretextDataset(pool, m, samples_per_volume=8, seed=seed), cfg, d).fit()
    return m, np.array([r['loss'] for r in hist['train']])


@pytest.mark.slow
@pytest.mark.parametrize('name', ['pgl', 'byol'])
def test_regression_losses_fall_on_phantoms(name):
    _, loss = _phantom_run(name, 60)
    assert np.isfinite(loss).all() and loss[-10:].mean() < 0.8 * loss[:10].mean()


@pytest.mark.slow
def test_moco_loss_falls_below_chance_on_phantoms():
    # the queue (64 keys, batch 4) is full after 16 steps; compare the end with the loss just after that
    m, loss = _phantom_run('moco', 300)
    chance = np.log(1 + m.config.queue_size)
    assert np.isfinite(loss).all()
    assert loss[-50:].mean() < loss[20:70].mean() - 0.2 and loss[-50:].mean() < chance - 0.3
