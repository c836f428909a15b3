"""ssl3d.finetune: load report, loss decrease, best.pt by validation Dice, `ssl3d finetune/evaluate/export` end to end
(predictions keep the input's shape and affine, volumes larger and smaller than the crop), MONAI export round trip."""
import csv, json
from pathlib import Path
import nibabel as nib
import numpy as np
import pytest
import torch

from ssl3d.core import Ssl3dError
from ssl3d.models import SegmentationNet, build_backbone
from ssl3d.phantoms import write_phantom_dataset
from ssl3d.checkpoints import load_checkpoint, save_checkpoint
import ssl3d.finetune as ft
import ssl3d.checkpoints as ck
import ssl3d.evaluate as ev
from ssl3d.cli import main


def _rows(path):
    with open(path, newline='') as f: return list(csv.DictReader(f))


def test_load_report_names_missing_and_unexpected():
    torch.manual_seed(0)
    net = SegmentationNet(*build_backbone(preset='tiny'), 3)
    sd = {k: v.clone() for k, v in SegmentationNet(*build_backbone(preset='tiny'), 3).state_dict().items() if not k.startswith('head.')}
    sd.pop('decoder.head.0.weight'); sd['encoder.extra.weight'] = torch.zeros(3)
    rep = ck.load_with_report(net, sd, expected=('encoder.', 'decoder.'), source='crafted.pt')
    assert rep.missing == ['decoder.head.0.weight']
    assert rep.unexpected == ['encoder.extra.weight']
    assert sorted(rep.fresh) == ['head.bias', 'head.weight'] and not rep.mismatched
    text = str(rep)
    assert 'decoder.head.0.weight' in text and 'encoder.extra.weight' in text and '1 missing' in text
    with pytest.raises(Ssl3dError, match='no weights loaded'): ck.load_with_report(net, {'foo': torch.zeros(1)})
    wide = SegmentationNet(*build_backbone(preset='tiny', base_width=16), 3).state_dict()
    with pytest.raises(Ssl3dError, match='different shape'): ck.load_with_report(net, wide, expected=('encoder.',))
    rep2 = ck.load_with_report(net, wide, expected=('encoder.', 'decoder.'), allow_shape_mismatch=True)
    assert rep2.mismatched and all(len(m) == 3 for m in rep2.mismatched)


def test_pretrained_checkpoint_errors(tmp_path):
    save_checkpoint(tmp_path/'bad.pt', model={}, transfer=None, provenance={})
    with pytest.raises(Ssl3dError, match="not a pretrained checkpoint"): ck.build_segmentation_model(tmp_path/'bad.pt', 3)
    e, d = build_backbone(preset='tiny')
    save_checkpoint(tmp_path/'nobb.pt', transfer={'encoder': e.state_dict(), 'decoder': None}, provenance={'method': 'x'})
    with pytest.raises(Ssl3dError, match="no 'backbone'"): ck.build_segmentation_model(tmp_path/'nobb.pt', 3)


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    "A tiny phantom dataset and a 30-step fine-tuning run made through the CLI."
    root = tmp_path_factory.mktemp('ft')
    data = root/'data'
    write_phantom_dataset(data, n=6, n_test=1, seed=0, shape=(56, 40, 56), spacing=(6., 6., 6.))
    rc = main(['finetune', '--data', str(data), '--init', 'none', '--label-fraction', '0.25', '--seed', '0',
               '--steps', '30', '--preset', 'tiny', '--out', str(root/'run'), '--device', 'cpu', '--set', 'eval_every=10', 'augment=False'])
    assert rc == 0
    return root, data, root/'run'


def test_set_values_are_typed(tiny_run):
    "`--set augment=False` is the boolean False in the run's record (it used to be the truthy string 'False')."
    root, data, run = tiny_run
    assert json.loads((run/'finetune.json').read_text())['config']['augment'] is False
    assert json.loads((run/'config.json').read_text())['provenance']['config']['augment'] is False
    with pytest.raises(Ssl3dError, match="augment='maybe': expected"): ft._parse_set(['augment=maybe'])
    with pytest.raises(Ssl3dError, match="no field 'nosuch'"): ft._parse_set(['nosuch=1'])


@pytest.mark.slow
def test_finetune_lowers_loss(tiny_run):
    _, _, run = tiny_run
    log = _rows(run/'log.csv')
    assert len(log) == 30 and {'loss', 'dice', 'ce'} <= set(log[0])
    first, last = np.mean([float(r['loss']) for r in log[:5]]), np.mean([float(r['loss']) for r in log[-5:]])
    assert last < first


@pytest.mark.slow
def test_best_checkpoint_is_best_validation_dice(tiny_run):
    _, _, run = tiny_run
    ev = _rows(run/'eval.csv')
    assert [int(r['step']) for r in ev] == [10, 20, 30]
    best = load_checkpoint(run/'best.pt')
    top = max(ev, key=lambda r: float(r['val_dice']))
    assert best['step'] == int(top['step']) and best['val_dice'] == pytest.approx(float(top['val_dice']))
    assert best['selection'] == 'val_dice'
    prov = best['provenance']
    assert prov['method'] == 'finetune' and prov['dataset_fingerprint'] and 'git_commit' in prov and prov['version']
    # the split file was written once next to the dataset and copied into the run
    sp = json.loads((tiny_run[1]/'ssl3d_splits'/'seed0.json').read_text())
    assert sp['val'] == best['splits']['val'] == json.loads((run/'splits.json').read_text())['val']


@pytest.mark.slow
def test_evaluate_cli_keeps_shape_and_affine(tiny_run):
    root, data, run = tiny_run
    out = root/'eval'
    assert main(['evaluate', '--data', str(data), '--model', str(run/'best.pt'), '--out', str(out), '--device', 'cpu']) == 0
    rows = _rows(out/'metrics.csv')
    assert {r['metric'] for r in rows} == {'dice', 'iou', 'hd95', 'nsd'}
    test_id = load_checkpoint(run/'best.pt')['splits']['test'][0]
    assert len(rows) == 13 * 4 and {r['volume'] for r in rows} == {test_id}
    pred, src = nib.load(out/'predictions'/f'{test_id}.nii.gz'), nib.load(data/'imagesTr'/f'{test_id}.nii.gz')
    assert pred.shape == src.shape and np.allclose(pred.affine, src.affine, atol=1e-4)
    assert json.loads((out/'metrics.json').read_text())['split'] == 'test'


@pytest.mark.slow
@pytest.mark.parametrize('shape,spacing', [((24, 20, 24), (6., 6., 6.)), ((96, 72, 96), (4., 4., 4.))])
def test_evaluate_volumes_smaller_and_larger_than_crop(tiny_run, shape, spacing):
    root, _, run = tiny_run
    other = root/f'other_{shape[0]}'
    write_phantom_dataset(other, n=0, n_test=1, seed=3, shape=shape, spacing=spacing)
    out = root/f'eval_{shape[0]}'
    assert main(['evaluate', '--data', str(other), '--model', str(run), '--out', str(out), '--split', 'msd-test', '--device', 'cpu']) == 0
    (img,) = sorted((other/'imagesTs').iterdir())
    pred, src = nib.load(out/'predictions'/img.name), nib.load(img)
    assert pred.shape == src.shape == shape and np.allclose(pred.affine, src.affine, atol=1e-4)
    assert len(_rows(out/'metrics.csv')) == 13 * 4


@pytest.mark.slow
def test_evaluate_refuses_foreign_split(tiny_run):
    root, _, run = tiny_run
    other = root/'foreign'
    write_phantom_dataset(other, n=2, n_test=0, seed=5, shape=(24, 20, 24), spacing=(6., 6., 6.))
    with pytest.raises(Ssl3dError, match="msd-test"): ev.evaluate_model(run, other, root/'e', split='test', device='cpu')


@pytest.mark.slow
def test_rerun_skips_finished(tiny_run, capsys):
    root, data, run = tiny_run
    before = (run/'best.pt').stat().st_mtime
    ft.finetune(data, 'none', run, 0.25, 0, 'tiny', 30, 'cpu', overrides=dict(eval_every=10, augment=False))
    assert 'skipping' in capsys.readouterr().out and (run/'best.pt').stat().st_mtime == before


@pytest.mark.slow
def test_monai_export_round_trip(tiny_run, tmp_path):
    from monai.networks import nets
    _, _, run = tiny_run
    assert main(['export', '--model', str(run/'best.pt'), '--out', str(tmp_path/'enc.pt')]) == 0
    spec = json.loads((tmp_path/'enc.json').read_text())
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in spec['kwargs'].items()}
    m = getattr(nets, spec['network'].rsplit('.', 1)[-1])(**kw).eval()
    m.load_state_dict(torch.load(tmp_path/'enc.pt', weights_only=True), strict=True)
    net, _ = ev.load_segmentation_model(run)
    x = torch.rand(1, 1, 64, 32, 64)
    with torch.no_grad(): assert torch.allclose(m(x), net.encoder(x)[-1].mean(dim=(2, 3, 4)), atol=1e-5)
    assert spec['provenance']['method'] == 'finetune'
