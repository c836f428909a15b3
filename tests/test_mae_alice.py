"""Transformers, MAE and Alice beyond the notebooks: a transformer checkpoint fine-tunes through the shared
`build_segmentation_model` path into the same network `--init none` builds from the same kwargs."""
import tempfile
import pytest
import torch
from ssl3d.core import Ssl3dError
from ssl3d.models import build_backbone, SegmentationNet
from ssl3d.checkpoints import save_checkpoint
from ssl3d.checkpoints import build_segmentation_model


@pytest.mark.parametrize('kw', [dict(arch='vit', preset='tiny'), dict(arch='vit', preset='tiny', hidden_size=24, num_heads=2, img_size=[32, 32, 16]),
                                dict(arch='swin', preset='tiny')])
def test_transformer_checkpoint_finetunes_like_random_init(kw):
    torch.manual_seed(0)
    enc, dec = build_backbone(**kw)
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(f'{d}/final.pt', transfer={'encoder': enc.state_dict(), 'decoder': None},
                        provenance={'method': 'test', 'backbone': dict(kw)})
        pre, info = build_segmentation_model(d, 3)
        rnd, rinfo = build_segmentation_model('none', 3, backbone=dict(kw))
    assert info['backbone'] == rinfo['backbone'] == kw
    sp, sr = pre.state_dict(), rnd.state_dict()
    assert list(sp) == list(sr) and all(sp[k].shape == sr[k].shape for k in sp)
    assert str(pre) == str(rnd)
    for k, v in enc.state_dict().items(): torch.testing.assert_close(sp[f'encoder.{k}'], v, rtol=0, atol=0)
    assert not torch.equal(sp['encoder.' + next(iter(enc.state_dict()))], sr['encoder.' + next(iter(enc.state_dict()))])
    size = (32, 32, 16) if kw['arch'] == 'vit' else (64, 64, 64)
    assert pre(torch.randn(1, 1, *size)).shape == (1, 3, *size)


def test_transformer_backbone_rejects_resnet_kwargs():
    with pytest.raises(Ssl3dError, match=r"\['base_width'\] are ResNet arguments"): build_backbone(arch='vit', base_width=8)


# ---- MAE and Alice through the CLI -------------------------------------------------------------------------------
import csv
import numpy as np
from ssl3d.cli import main
from ssl3d.checkpoints import load_checkpoint


def _losses(run, key='loss'):
    with open(f'{run}/log.csv') as f: rows = [r for r in csv.DictReader(f) if r.get(key) not in (None, '')]
    return np.array([float(r[key]) for r in rows])


@pytest.fixture(scope='module')
def phantoms(tmp_path_factory):
    from ssl3d.phantoms import write_phantom_dataset
    return write_phantom_dataset(tmp_path_factory.mktemp('ph') / 'data', n=4, n_test=1, seed=0, shape=(64, 64, 32))


def test_cli_mae_and_alice_write_transferable_checkpoints(phantoms, tmp_path):
    for method, extra in (('mae', []), ('alice', ['--matcher', 'ncc'])):
        out = tmp_path / method
        rc = main(['pretrain', '--data', str(phantoms), '--method', method, '--out', str(out), '--steps', '2', '--preset', 'cpu-small',
                   '--batch-size', '2', '--input-size', '32', '32', '16', '--no-progress', *extra])
        assert rc == 0
        ck = load_checkpoint(out / 'final.pt')
        assert ck['provenance']['backbone']['arch'] == 'vit' and ck['transfer']['decoder'] is None
        net, info = build_segmentation_model(out, 3)
        assert info['load_report'].complete
        rnd, _ = build_segmentation_model('none', 3, backbone=ck['provenance']['backbone'])
        assert str(net) == str(rnd)
    assert load_checkpoint(tmp_path / 'alice' / 'final.pt')['provenance']['config']['matcher'] == 'ncc'


@pytest.mark.slow
def test_cli_mae_cpu_small_loss_falls_on_phantoms(phantoms, tmp_path):
    rc = main(['pretrain', '--data', str(phantoms), '--method', 'mae', '--out', str(tmp_path / 'r'), '--steps', '300',
               '--input-size', '32', '32', '16', '--no-progress'])
    assert rc == 0
    loss = _losses(tmp_path / 'r')
    # normalised-pixel targets have unit variance per patch: 1.0 is the loss of predicting each patch's mean
    assert np.isfinite(loss).all() and loss[-30:].mean() < 0.97 and loss[-30:].mean() < 0.85 * loss[:10].mean()


@pytest.mark.slow
def test_cli_alice_cpu_small_losses_fall_on_phantoms(phantoms, tmp_path):
    rc = main(['pretrain', '--data', str(phantoms), '--method', 'alice', '--out', str(tmp_path / 'r'), '--steps', '100',
               '--input-size', '32', '32', '16', '--no-progress'])
    assert rc == 0
    loss, rec = _losses(tmp_path / 'r'), _losses(tmp_path / 'r', 'rec')
    assert np.isfinite(loss).all() and loss[-20:].mean() < 0.7 * loss[:10].mean() and rec[-20:].mean() < 0.85 * rec[:10].mean()


@pytest.mark.slow
def test_label_efficiency_accepts_mae_and_alice(tmp_path):
    import pandas as pd
    from test_experiment_notebooks import papermill
    out = papermill(tmp_path, 'label_efficiency', ('methods', 'mae,alice'), ('seeds', '0'), ('label_fractions', '1.0'),
                    ('pretrain_steps', 2), ('finetune_steps', 2))
    df = pd.read_csv(out / 'results.csv')
    assert set(df['method']) == {'random', 'mae', 'alice'}  # the protocol adds a random-init control per network
    assert df[df['method'] == 'random']['network'].nunique() == 2 and df['architecture'].nunique() == 2  # ResNet and ViT
    for arch, g in df.groupby('architecture'): assert 'random' in set(g['method']), arch
    ck = load_checkpoint(next((out / 'pretrain').glob('*alice*/final.pt')))
    assert ck['provenance']['backbone']['arch'] == 'vit'


@pytest.mark.slow
def test_cli_alice_with_the_vp_matcher(phantoms, tmp_path):
    from ssl3d.core import config_to_dict
    from ssl3d.methods.vectorpose import VectorPOSE
    torch.manual_seed(0)
    vp = VectorPOSE(VectorPOSE.PRESETS['tiny'])
    save_checkpoint(tmp_path / 'vp.pt', model=vp.state_dict(), provenance={'method': 'vectorpose', 'config': config_to_dict(vp.config)})
    rc = main(['pretrain', '--data', str(phantoms), '--method', 'alice', '--out', str(tmp_path / 'r'), '--steps', '1', '--batch-size', '2',
               '--input-size', '32', '32', '16', '--matcher', 'vp', '--matcher-kwargs', f'{{"checkpoint": "{tmp_path / "vp.pt"}", "step": 8}}',
               '--no-progress'])
    assert rc == 0 and load_checkpoint(tmp_path / 'r' / 'final.pt')['provenance']['config']['matcher'] == 'vp'
