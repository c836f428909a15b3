"""ssl3d.train: exact resume (in-process stop and a killed subprocess), NaN stop, DataLoader workers,
DDP with two processes under torchrun (gloo on CPU), eval.csv, bad inputs."""
import csv, importlib.util, os, random, signal, subprocess, sys, textwrap, time, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from torch import nn
import torchio as tio

from ssl3d.core import Ssl3dError
from ssl3d.methods.core import PretextDataset, ToyRestoration, build_method
from ssl3d.train import NonFiniteLoss, Trainer, train_config
from ssl3d.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]

# The helper module is written to disk so that subprocesses (kill test, torchrun) use the same code.
HELPER = '''
import os, random, sys, time
import numpy as np, torch, torchio as tio
from ssl3d.methods.core import PretextDataset, ToyRestoration
from ssl3d.train import Trainer, train_config

class NoisyToy(ToyRestoration):
    "Toy method whose loss also uses the python, numpy and torch global RNGs, so a resume must restore them."
    sleep = 0.0
    def forward(self, batch):
        out = super().forward(batch)
        jitter = 1 + 0.01 * (torch.rand(()) + float(np.random.rand()) + random.random())
        out['loss'] = out['loss'] * jitter
        return out
    def after_step(self, step, total):
        if self.sleep: time.sleep(self.sleep)

def subjects():
    g = torch.Generator().manual_seed(0)
    return [tio.Subject(image=tio.ScalarImage(tensor=torch.rand(1, 12, 12, 10, generator=g)), id=f's{i}') for i in range(3)]

def run(out, steps=12, stop_at=None, sleep=0.0, **cfg):
    torch.manual_seed(0)
    m = NoisyToy({'crop': 8, 'width': 4})
    m.sleep = sleep
    ds = PretextDataset(subjects(), m, samples_per_volume=4, seed=1)
    kw = dict(steps=steps, batch_size=2, lr=1e-2, log_every=3, ckpt_every=4, seed=3)
    kw.update(cfg)
    Trainer(m, ds, train_config(**kw), out).fit(stop_at=stop_at)
    return m

if __name__ == '__main__':
    run(sys.argv[1], steps=int(sys.argv[2]), sleep=float(sys.argv[3]))
'''


@pytest.fixture(scope='module')
def helper(tmp_path_factory):
    d = tmp_path_factory.mktemp('helper')
    (d / 'trainhelper.py').write_text(HELPER)
    spec = importlib.util.spec_from_file_location('trainhelper', d / 'trainhelper.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    mod.path = d / 'trainhelper.py'
    return mod


def _same_weights(a, b):
    assert a.keys() == b.keys()
    bad = [k for k in a if not torch.equal(a[k], b[k])]
    assert not bad, f'differing tensors: {bad}'


def _steps(log):
    return [int(r['step']) for r in csv.DictReader(open(log))]


def test_resume_is_exact(helper, tmp_path):
    ref = helper.run(tmp_path / 'straight')
    helper.run(tmp_path / 'cut', stop_at=5)  # checkpoints at 4 and at the stop (5)
    assert load_checkpoint(tmp_path / 'cut' / 'checkpoint.pt')['step'] == 5
    assert not (tmp_path / 'cut' / 'final.pt').exists()
    resumed = helper.run(tmp_path / 'cut')
    _same_weights(ref.state_dict(), resumed.state_dict())
    assert (tmp_path / 'straight' / 'log.csv').read_text() == (tmp_path / 'cut' / 'log.csv').read_text()
    assert _steps(tmp_path / 'cut' / 'log.csv') == list(range(1, 13))
    _same_weights(load_checkpoint(tmp_path / 'straight' / 'final.pt')['model'],
                  load_checkpoint(tmp_path / 'cut' / 'final.pt')['model'])


def test_workers_give_the_same_run(helper, tmp_path):
    a = helper.run(tmp_path / 'w0', steps=8, num_workers=0)
    b = helper.run(tmp_path / 'w2', steps=8, num_workers=2)
    _same_weights(a.state_dict(), b.state_dict())


@pytest.mark.slow
def test_killed_process_resumes_exactly(helper, tmp_path):
    steps, out = 40, tmp_path / 'killed'
    env = {**os.environ, 'PYTHONPATH': str(ROOT)}
    p = subprocess.Popen([sys.executable, str(helper.path), str(out), str(steps), '0.05'], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    while not (out / 'checkpoint.pt').exists():
        assert p.poll() is None, p.communicate()[1].decode()[-2000:]
        assert time.time() - t0 < 120, 'no checkpoint after 120 s'
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL
    saved = load_checkpoint(out / 'checkpoint.pt')['step']
    assert 4 <= saved < steps and not (out / 'final.pt').exists()
    r = subprocess.run([sys.executable, str(helper.path), str(out), str(steps), '0'], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    ref = helper.run(tmp_path / 'straight', steps=steps)
    _same_weights(ref.state_dict(), load_checkpoint(out / 'final.pt')['model'])
    assert _steps(out / 'log.csv') == list(range(1, steps + 1))  # rows logged after the checkpoint were not duplicated


class Exploding(nn.Module):
    "Loss turns to +inf in term `bad` at call `at`."
    def __init__(self, at):
        super().__init__(); self.w, self.at, self.calls = nn.Parameter(torch.ones(1)), at, 0
    def forward(self, batch):
        self.calls += 1
        good = (self.w - 2) ** 2
        bad = self.w * batch['input'].mean() * (float('inf') if self.calls >= self.at else 0.0)
        return {'loss': good + bad, 'good': good, 'bad': bad}


def _toy_dataset():
    subj = [tio.Subject(image=tio.ScalarImage(tensor=torch.rand(1, 10, 10, 10))) for _ in range(2)]
    return PretextDataset(subj, build_method('toy', preset='cpu-small'), samples_per_volume=4)


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path):
    tr = Trainer(Exploding(at=7), _toy_dataset(), train_config(steps=20, ckpt_every=3, log_every=5), tmp_path)
    with pytest.raises(NonFiniteLoss, match=r"step 7: .*bad=inf") as e:
        tr.fit()
    assert isinstance(e.value, Ssl3dError)
    assert 'step 6' in str(e.value) and 'kept' in str(e.value)
    ck = load_checkpoint(tmp_path / 'checkpoint.pt')
    assert ck['step'] == 6 and torch.isfinite(ck['model']['w']).all()
    assert _steps(tmp_path / 'log.csv') == list(range(1, 8))  # the bad row is logged, nothing after it
    assert not (tmp_path / 'final.pt').exists()


def test_nan_before_any_checkpoint(tmp_path):
    tr = Trainer(Exploding(at=1), _toy_dataset(), train_config(steps=5, ckpt_every=3, log_every=5), tmp_path)
    with pytest.raises(NonFiniteLoss, match='no checkpoint had been written yet'):
        tr.fit()
    assert not (tmp_path / 'checkpoint.pt').exists()


def test_eval_csv_and_resume_truncation(tmp_path):
    calls = []
    def eval_fn(model, step):
        assert not model.training
        calls.append(step); return {'score': step / 10}
    torch.manual_seed(0)
    m = build_method('toy', preset='cpu-small')
    cfg = train_config(steps=8, eval_every=3, ckpt_every=4, log_every=2)
    Trainer(m, _toy_dataset(), cfg, tmp_path, eval_fn=eval_fn).fit(stop_at=4)
    # a later crash leaves extra rows beyond the checkpoint: they must be dropped on resume
    with open(tmp_path / 'log.csv', 'a') as f: f.write('5,0,0.1,1,1,1\n')
    hist = Trainer(m, _toy_dataset(), cfg, tmp_path, eval_fn=eval_fn).fit()
    assert calls == [3, 6, 8]
    assert [float(r['score']) for r in csv.DictReader(open(tmp_path / 'eval.csv'))] == [0.3, 0.6, 0.8]
    assert _steps(tmp_path / 'log.csv') == list(range(1, 9))
    assert [r['step'] for r in hist['train']] == [5, 6, 7, 8]


def test_fresh_start_and_changed_config(tmp_path):
    torch.manual_seed(0)
    m = build_method('toy', preset='cpu-small')
    Trainer(m, _toy_dataset(), train_config(steps=4, ckpt_every=2), tmp_path).fit(stop_at=2)
    with pytest.warns(UserWarning, match='changed settings.*lr'):
        Trainer(m, _toy_dataset(), train_config(steps=4, ckpt_every=2, lr=1e-3), tmp_path).fit()
    Trainer(m, _toy_dataset(), train_config(steps=3, ckpt_every=2), tmp_path).fit(resume=False)
    assert _steps(tmp_path / 'log.csv') == [1, 2, 3]
    assert load_checkpoint(tmp_path / 'checkpoint.pt')['step'] == 3


def test_bad_inputs(tmp_path):
    class NoLoss(nn.Module):
        def __init__(self): super().__init__(); self.w = nn.Parameter(torch.ones(1))
        def forward(self, batch): return {'total': self.w.sum()}
    ds = _toy_dataset()
    with pytest.raises(Ssl3dError, match="'loss' entry"):
        Trainer(NoLoss(), ds, train_config(steps=2), tmp_path).fit()
    with pytest.raises(Ssl3dError, match='dataset has 8 items, fewer than batch_size'):
        Trainer(NoLoss(), ds, train_config(steps=2, batch_size=16), tmp_path).fit()
    with pytest.raises(Ssl3dError, match='unknown key'):
        Trainer(NoLoss(), ds, {'step': 3}, tmp_path)
    with pytest.raises(Ssl3dError, match='no parameters that require grad'):
        Trainer(nn.Identity(), ds, train_config(steps=2), tmp_path).fit()
    with pytest.raises(Ssl3dError, match='checkpoint not found'):
        load_checkpoint(tmp_path / 'nope.pt')


DDP_SCRIPT = '''
import os, sys, torch, torch.distributed as dist
sys.path.insert(0, {helper_dir!r})
import trainhelper
out = sys.argv[1]
dist.init_process_group('gloo')  # the trainer reuses an existing process group
rank = dist.get_rank()
a = trainhelper.run(os.path.join(out, 'straight'), steps=10)
trainhelper.run(os.path.join(out, 'cut'), steps=10, stop_at=5)
b = trainhelper.run(os.path.join(out, 'cut'), steps=10)
torch.save(a.state_dict(), os.path.join(out, f'straight_rank{{rank}}.pt'))
torch.save(b.state_dict(), os.path.join(out, f'cut_rank{{rank}}.pt'))
dist.barrier()
dist.destroy_process_group()
'''


@pytest.mark.slow
def test_ddp_two_processes(helper, tmp_path):
    script = tmp_path / 'ddp.py'
    script.write_text(DDP_SCRIPT.format(helper_dir=str(helper.path.parent)))
    env = {**os.environ, 'PYTHONPATH': str(ROOT), 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                        str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    w = {f'{k}{i}': torch.load(tmp_path / f'{k}_rank{i}.pt', weights_only=True) for k in ('straight', 'cut') for i in (0, 1)}
    _same_weights(w['straight0'], w['straight1'])  # ranks agree
    _same_weights(w['straight0'], w['cut0'])  # DDP resume is exact too
    _same_weights(w['cut0'], w['cut1'])
    assert _steps(tmp_path / 'straight' / 'log.csv') == list(range(1, 11))
    assert (tmp_path / 'cut' / 'log.csv').read_text() == (tmp_path / 'straight' / 'log.csv').read_text()
    ck = load_checkpoint(tmp_path / 'straight' / 'checkpoint.pt')
    assert ck['world_size'] == 2 and len(ck['rng']) == 2
    assert not list(tmp_path.glob('straight/*.tmp')) and (tmp_path / 'straight' / 'final.pt').exists()
