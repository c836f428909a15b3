"""MixCL end to end: `ssl3d pretrain --method mixcl --data A --data B` on pooled phantom subsets lowers all three
terms, the checkpoint fine-tunes as a UNETR, and the label-efficiency experiment keeps its test volumes out of
MixCL's (labelled) pretraining pool."""
import json, re, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ssl3d.cli import main
from ssl3d.core import DataError, load_json, seed_everything
from ssl3d.phantoms import write_phantom_dataset
from ssl3d.pretrain import pooled_pretrain_subjects
from ssl3d.methods.core import PretextDataset, build_method
from ssl3d.patches import collate
from ssl3d.checkpoints import load_checkpoint
import ssl3d.methods.mixcl  # registers 'mixcl'

sys.path.insert(0, str(Path(__file__).parent))
from test_experiment_notebooks import papermill  # noqa: E402


@pytest.fixture(scope='module')
def pooled(tmp_path_factory):
    "Two phantom datasets that annotate different organs (liver shared)."
    root = tmp_path_factory.mktemp('pooled')
    write_phantom_dataset(root / 'A', n=3, n_test=1, seed=1, shape=(64, 64, 48), organs=['liver', 'spleen', 'stomach'])
    write_phantom_dataset(root / 'B', n=3, n_test=1, seed=2, shape=(64, 64, 48),
                          organs=['liver', 'right_kidney', 'left_kidney', 'pancreas'])
    return root


def terms(cfg:dict, subjects, info, state=None, n_batches:int=6) -> np.ndarray:
    "Mean (identity, label, recon) over fixed batches; the initial weights of a seed-0 run when `state` is None."
    seed_everything(0)
    m = build_method('mixcl', cfg); m.bind_pool(subjects, info)
    if state is not None: m.load_state_dict(state)
    ds = PretextDataset(subjects, m, samples_per_volume=4, seed=123)
    out = []
    with torch.no_grad():
        for b in range(n_batches):
            r = m(collate([ds[2 * b], ds[2 * b + 1]]))
            out.append([float(r[k]) for k in ('identity', 'label', 'recon')])
    return np.mean(out, 0)


@pytest.mark.slow
def test_cli_pooled_pretraining_lowers_all_three_terms(pooled):
    run = pooled / 'run'
    rc = main(['pretrain', '--method', 'mixcl', '--data', str(pooled / 'A'), '--data', str(pooled / 'B'), '--out', str(run),
               '--preset', 'cpu-small', '--device', 'cpu', '--no-progress'])
    assert rc == 0 and (run / 'final.pt').exists()
    prov = load_json(run / 'config.json')['provenance']
    d = prov['data']
    assert d['label_space'] == ['background', 'liver', 'spleen', 'stomach', 'right_kidney', 'left_kidney', 'pancreas']
    assert d['annotated'] == [[True, True, True, True, False, False, False], [True, True, False, False, True, True, True]]
    assert [p['n_subjects'] for p in d['datasets']] == [3, 3]  # labelled training cases of both; no test case
    log = pd.read_csv(run / 'log.csv')
    assert log['step'].max() == 80 and {'identity', 'label', 'recon'} <= set(log.columns)
    subjects, info = pooled_pretrain_subjects([pooled / 'A', pooled / 'B'])
    before = terms(prov['config'], subjects, info)
    after = terms(prov['config'], subjects, info, load_checkpoint(run / 'final.pt')['model'])
    # measured: identity 13.4 → 5.7, label 1.62 → 1.11, recon 0.50 → 0.025 (fixed batches, same seeds)
    assert after[0] < 0.8 * before[0], (before, after)
    assert after[1] < 0.9 * before[1], (before, after)
    assert after[2] < 0.5 * before[2], (before, after)


@pytest.mark.slow
def test_checkpoint_fine_tunes_as_unetr(pooled, tmp_path):
    from ssl3d.pretrain import pretrain
    from ssl3d.checkpoints import build_segmentation_model
    final = pretrain([pooled / 'A', pooled / 'B'], 'mixcl', tmp_path / 'r', preset='cpu-small', steps=2, device='cpu', progress=False)
    net, info = build_segmentation_model(final, 3)
    assert type(net.encoder).__name__ == 'ViTEncoder' and type(net.decoder).__name__ == 'UNETRDecoder'
    assert info['backbone']['arch'] == 'vit'
    enc = load_checkpoint(final)['transfer']['encoder']
    torch.testing.assert_close(net.encoder.state_dict()['vit.blocks.0.mlp.linear1.weight'], enc['vit.blocks.0.mlp.linear1.weight'])
    assert net(torch.rand(1, 1, 32, 32, 32)).shape == (1, 3, 32, 32, 32)


def test_label_free_pool_is_refused_for_mixcl(tmp_path):
    write_phantom_dataset(tmp_path / 'U', n=0, n_test=0, n_unlabelled=2, seed=3, shape=(32, 32, 32))
    with pytest.raises(DataError, match='no cases left for pretraining'):
        pooled_pretrain_subjects([tmp_path / 'U'])


@pytest.mark.slow
def test_label_efficiency_keeps_test_volumes_out_of_mixcls_pool(tmp_path):
    out = papermill(tmp_path, 'label_efficiency', ('methods', 'random,mixcl'), ('seeds', '0'), ('n_labelled', 6),
                    ('label_fractions', '1.0'), ('pretrain_steps', 2), ('finetune_steps', 2))
    splits = load_json(out / 'splits.json')
    assert splits['test'] and splits['val']
    runs = list((out / 'pretrain').glob('method=mixcl*/config.json'))
    assert len(runs) == 1
    d = load_json(runs[0])['provenance']['data']
    assert d['labelled'] and set(d['ids']) == set(splits['train'])                 # the labels it saw: the train split
    assert not set(d['ids']) & (set(splits['test']) | set(splits['val']))           # never a val/test volume
    assert set(d['excluded']) == set(splits['test']) | set(splits['val'])
    df = pd.read_csv(out / 'results.csv')
    assert set(df['method']) == {'random', 'mixcl'}
    nb = json.loads((out / 'executed.ipynb').read_text())
    said = ''.join(''.join(o.get('text', '')) for c in nb['cells'] for o in c.get('outputs', []))
    assert re.search(r'method=mixcl\S*seed=0: label maps of', said) and f"none of the {len(splits['val'])} val / {len(splits['test'])} test volumes" in said


def test_bad_inputs_name_what_is_wrong(tmp_path):
    from ssl3d.core import Ssl3dError
    from ssl3d.data import pool_label_spaces
    from ssl3d.methods.mixcl import prepare_mixcl, MixCLConfig
    import torchio as tio
    write_phantom_dataset(tmp_path / 'C', n=1, n_test=0, seed=4, shape=(32, 32, 32), organs=['liver'])
    write_phantom_dataset(tmp_path / 'M', n=1, n_test=0, seed=5, shape=(32, 32, 32), modality='mr', organs=['spleen'])
    with pytest.raises(Ssl3dError, match='different modalities'): pooled_pretrain_subjects([tmp_path / 'C', tmp_path / 'M'])
    with pytest.raises(DataError, match="names two values 1 and 2 'Liver'"): pool_label_spaces([{1: 'liver', 2: 'Liver'}])
    with pytest.raises(DataError, match='negative label value -1'): pool_label_spaces([{-1: 'x'}])
    with pytest.raises(Ssl3dError, match=r"ViT block 5 .* not in \[0, 2\)"): build_method('mixcl', {'label_layer': 5}, preset='cpu-small')
    s = tio.Subject(image=tio.ScalarImage(tensor=torch.rand(1, 32, 32, 32)), id='nolabel')
    with pytest.raises(DataError, match="subject 'nolabel': MixCL needs a label map"):
        prepare_mixcl(s, np.random.default_rng(0), MixCLConfig(input_size=(32, 32, 32)))
    assert main(['phantoms', str(tmp_path / 'x'), '--n', '1', '--n-test', '0', '--shape', '32', '32', '32', '--organs', 'liver', 'bogus']) == 2
    assert not (tmp_path / 'x' / 'dataset.json').exists()
