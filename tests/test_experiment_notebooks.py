"""The experiment notebooks run under papermill's command line with parameter overrides, and the overrides take effect."""
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / 'nbs' / 'experiments'


def papermill(tmp_path, name, *params):
    "Run nbs/experiments/NAME.ipynb with `papermill -p K V ...` in tmp_path (as out_dir '.') and return tmp_path."
    args = [a for k, v in params for a in ('-p', k, str(v))]
    cmd = [sys.executable, '-m', 'papermill', str(EXP / f'{name}.ipynb'), str(tmp_path / 'executed.ipynb'),
           '--cwd', str(tmp_path), '-p', 'out_dir', '.', *args, '--no-progress-bar']
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'MPLBACKEND': 'Agg', 'PYTHONWARNINGS': 'ignore'}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    nb = json.loads((tmp_path / 'executed.ipynb').read_text())
    injected = [c for c in nb['cells'] if 'injected-parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(injected) == 1  # papermill put the overrides after the `parameters` cell
    return tmp_path


@pytest.mark.slow
def test_pretrain_notebook_overrides(tmp_path):
    out = papermill(tmp_path, 'pretrain', ('method', 'models_genesis'), ('steps', 3))
    assert pd.read_csv(out / 'run' / 'log.csv')['step'].max() == 3
    assert (out / 'run' / 'final.pt').exists() and (out / 'pretrain_loss.png').exists()
    df = pd.read_csv(out / 'results.csv')
    assert set(df['method']) == {'models_genesis'}
    assert df.loc[df['metric'] == 'steps', 'value'].tolist() == [3.0]


@pytest.mark.slow
def test_finetune_notebook_overrides(tmp_path):
    out = papermill(tmp_path, 'finetune', ('seed', 1), ('label_fraction', 0.5), ('steps', 4))
    df = pd.read_csv(out / 'results.csv')
    assert set(df['seed']) == {1} and set(df['label_fraction']) == {0.5} and set(df['method']) == {'random'}
    assert {'dice', 'hd95'} <= set(df['metric'])


@pytest.mark.slow
def test_label_efficiency_notebook_overrides(tmp_path):
    out = papermill(tmp_path, 'label_efficiency', ('methods', 'random,vectorpose'), ('seeds', '1'),
                    ('label_fractions', '1.0'), ('pretrain_steps', 2), ('finetune_steps', 2))
    df = pd.read_csv(out / 'results.csv')
    assert set(df['method']) == {'random', 'vectorpose'} and set(df['seed']) == {1} and set(df['label_fraction']) == {1.0}
    assert (out / 'label_efficiency.png').exists() and (out / 'label_efficiency.pdf').exists()


@pytest.mark.slow
def test_vp_ablation_notebook_overrides(tmp_path):
    out = papermill(tmp_path, 'vp_ablation', ('ablations', 'voxel,+boundary'), ('seeds', '1'))
    df = pd.read_csv(out / 'results.csv')
    assert set(df['seed']) == {1}
    assert set(df['method']) == {'random', 'voxel', '+boundary'}   # the random-init control is on by default (issue 12)
    assert {'architecture', 'subset'} <= set(df.columns) and df['architecture'].nunique() == 1


@pytest.mark.slow
def test_label_efficiency_accepts_the_two_view_methods(tmp_path):
    out = papermill(tmp_path, 'label_efficiency', ('methods', 'pgl,byol,moco'), ('seeds', '0'),
                    ('label_fractions', '1.0'), ('pretrain_steps', 2), ('finetune_steps', 2))
    df = pd.read_csv(out / 'results.csv')
    assert set(df['method']) == {'random', 'pgl', 'byol', 'moco'}   # the protocol adds the random-init control
    assert df['architecture'].nunique() == 1                          # pretrained with layout='standard' (issue 12)
