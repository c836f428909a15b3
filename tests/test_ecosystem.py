"""Ecosystem formats end to end: an nnU-Net v2 phantom dataset (2 channels) through `ssl3d data/pretrain/finetune/
evaluate`; safetensors weights + sidecar (tampered window warns, legacy final.pt gives the identical network);
`ssl3d export --format hf` then `finetune --init DIR` offline; `hf://` without the hub fails at once; TensorBoard."""
import csv, json, shutil, sys, types
from pathlib import Path
import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from ssl3d.cli import main
from ssl3d.core import Ssl3dError
from ssl3d.checkpoints import read_pretrained, load_weights, file_sha256
import ssl3d.checkpoints as ck
import ssl3d.evaluate as ev
from ssl3d.checkpoints import load_checkpoint

TINY_PRE = ['--method', 'vectorpose', '--preset', 'tiny', '--steps', '2', '--crop-size', '32', '--batch-size', '2', '--device', 'cpu']
TINY_FT = ['--preset', 'tiny', '--label-fraction', '1', '--device', 'cpu', '--set', 'eval_every=2', 'samples_per_volume=2']


def _rows(path):
    with open(path, newline='') as f: return list(csv.DictReader(f))


@pytest.fixture(scope='module')
def nn_run(tmp_path_factory):
    "nnU-Net v2 phantoms with two channels, written by the CLI, and a 2-step pretraining on them."
    root = tmp_path_factory.mktemp('eco')
    data = root/'Dataset001_Phantom'
    assert main(['phantoms', str(data), '--format', 'nnunet', '--channels', '2', '--n', '5', '--n-test', '1',
                 '--shape', '48', '48', '32', '--spacing', '6', '6', '6']) == 0
    assert main(['pretrain', '--data', str(data), '--out', str(root/'pre'), *TINY_PRE]) == 0
    return root, data, root/'pre'


@pytest.mark.slow
def test_nnunet_two_channels_through_the_cli(nn_run, capsys):
    root, data, pre = nn_run
    assert sorted(p.name for p in (data/'imagesTr').iterdir())[:2] == ['abdomen_0000_0000.nii.gz', 'abdomen_0000_0001.nii.gz']
    assert main(['data', str(data)]) == 0
    out = capsys.readouterr().out
    assert '(nnunet, split=all)' in out and 'channels [2]' in out and '6 subjects (6 labelled)' in out
    # pretraining: weights in safetensors with their sidecar, beside the legacy final.pt and the resume state
    assert {'model.safetensors', 'model.json', 'final.pt', 'checkpoint.pt'} <= {p.name for p in pre.iterdir()}
    sc = json.loads((pre/'model.json').read_text())
    assert sc['method'] == 'vectorpose' and sc['backbone']['in_channels'] == 2 and sc['steps'] == 2
    assert sc['preprocessing'] == dict(modality='ct', hu_range=[-1000.0, 1000.0], percentiles=[0.5, 99.5], spacing=None,
                                       crop_body=True, orientation='RAS+')
    assert len(sc['dataset_fingerprint']) == 64 and sc['version'] and 'commit' in sc and sc['weights_sha256'] == file_sha256(pre/'model.safetensors')
    ck = load_checkpoint(pre/'checkpoint.pt')
    assert 'optimizer' in ck and 'rng' in ck and 'optimizer' not in load_weights(pre/'model.safetensors')[1]
    assert main(['finetune', '--data', str(data), '--init', str(pre), '--steps', '2', '--out', str(root/'ft'), *TINY_FT]) == 0
    rep = json.loads((root/'ft'/'load_report.json').read_text())
    assert rep['source'].endswith('model.safetensors') and not rep['missing'] and not rep['unexpected']
    assert main(['evaluate', '--data', str(data), '--model', str(root/'ft'), '--out', str(root/'ev'), '--split', 'msd-test',
                 '--device', 'cpu']) == 0
    rows = _rows(root/'ev'/'metrics.csv')
    assert {r['volume'] for r in rows} == {'abdomen_0005'} and {r['metric'] for r in rows} == {'dice', 'iou', 'hd95', 'nsd'}
    pred, src = nib.load(root/'ev'/'predictions'/'abdomen_0005.nii.gz'), nib.load(data/'imagesTs'/'abdomen_0005_0000.nii.gz')
    assert pred.shape == src.shape and np.allclose(pred.affine, src.affine, atol=1e-4)


def test_nnunet_bad_layouts_name_the_case(tmp_path, capsys):
    data = tmp_path/'Dataset002_Bad'
    assert main(['phantoms', str(data), '--format', 'nnunet', '--channels', '2', '--n', '2', '--n-test', '0',
                 '--shape', '24', '24', '16', '--spacing', '8', '8', '8']) == 0
    (data/'imagesTr'/'abdomen_0001_0001.nii.gz').unlink()
    assert main(['data', str(data)]) == 2
    assert "case 'abdomen_0001'" in capsys.readouterr().err
    shutil.copy(data/'imagesTr'/'abdomen_0000_0001.nii.gz', data/'imagesTr'/'abdomen_0001_0001.nii.gz')
    meta = json.loads((data/'dataset.json').read_text())
    (data/'dataset.json').write_text(json.dumps({**meta, 'file_ending': '.png'}))
    assert main(['data', str(data)]) == 2 and "file_ending '.png'" in capsys.readouterr().err
    labels = dict(meta['labels']); labels['left_adrenal'] = 20
    (data/'dataset.json').write_text(json.dumps({**meta, 'labels': labels}))
    assert main(['data', str(data)]) == 2 and 'not consecutive from 0' in capsys.readouterr().err


@pytest.mark.slow
def test_tampered_sidecar_window_warns_and_is_taken_over(nn_run, tmp_path):
    root, data, pre = nn_run
    run = tmp_path/'pre'; shutil.copytree(pre, run)
    sc = json.loads((run/'model.json').read_text())
    sc['preprocessing']['hu_range'] = [-200.0, 300.0]
    (run/'model.json').write_text(json.dumps(sc))
    # the user asks for another window: the warning names the field and both values
    with pytest.warns(UserWarning, match=r'preprocessing\.hu_range.*\[-200\.0, 300\.0\].*\[-1000\.0, 1000\.0\]'):
        assert main(['finetune', '--data', str(data), '--init', str(run), '--steps', '2', '--out', str(tmp_path/'a'), *TINY_FT,
                     'hu_range=[-1000,1000]']) == 0
    assert load_checkpoint(tmp_path/'a'/'best.pt')['preprocessing']['hu_range'] == [-1000, 1000]
    # left unset: fine-tuning (and so evaluation, from best.pt) uses the sidecar's window
    assert main(['finetune', '--data', str(data), '--init', str(run), '--steps', '2', '--out', str(tmp_path/'b'), *TINY_FT]) == 0
    assert load_checkpoint(tmp_path/'b'/'best.pt')['preprocessing']['hu_range'] == [-200.0, 300.0]
    _, meta = ev.load_segmentation_model(tmp_path/'b')
    assert [t for t in meta['transform'] if type(t).__name__ == 'Clamp'][0].out_min == -200.0
    # a sidecar that does not belong to the weights is reported
    (run/'model.json').write_text(json.dumps({**sc, 'weights_sha256': '0' * 64}))
    with pytest.warns(UserWarning, match='weights_sha256 does not match'): read_pretrained(run)


@pytest.mark.slow
def test_safetensors_and_legacy_pt_give_identical_networks(nn_run, tmp_path):
    root, data, pre = nn_run
    torch.manual_seed(3); a, ia = ck.build_segmentation_model(pre/'model.safetensors', 14)
    torch.manual_seed(3); b, ib = ck.build_segmentation_model(pre/'final.pt', 14)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert sorted(ia['load_report'].loaded) == sorted(ib['load_report'].loaded) and ia['load_report'].complete
    assert ia['sidecar']['weights_fingerprint'] == ib['sidecar']['weights_fingerprint']
    outs = []
    for name, init in (('st', pre/'model.safetensors'), ('pt', pre/'final.pt')):
        assert main(['finetune', '--data', str(data), '--init', str(init), '--steps', '2', '--out', str(tmp_path/name), *TINY_FT]) == 0
        outs.append(load_checkpoint(tmp_path/name/'last.pt')['model'])
    assert outs[0].keys() == outs[1].keys() and all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


@pytest.mark.slow
def test_hf_export_then_finetune_offline(nn_run, tmp_path, monkeypatch):
    root, data, pre = nn_run
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    hf = tmp_path/'hf'
    assert main(['export', '--format', 'hf', '--model', str(pre), '--out', str(hf), '--licence', 'cc-by-4.0']) == 0
    assert sorted(p.name for p in hf.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    card = (hf/'README.md').read_text()
    assert card.startswith('---\n')
    front = yaml.safe_load(card.split('---\n')[1])
    assert front['library_name'] == 'ssl3d' and front['license'] == 'cc-by-4.0' and 'vectorpose' in front['tags']
    assert front['datasets'] == ['Dataset001_Phantom']
    assert '| method | vectorpose (preset tiny) |' in card and '| steps | 2 |' in card and 'No label-efficiency result' in card
    cfg = json.loads((hf/'config.json').read_text())
    assert cfg['library_name'] == 'ssl3d' and cfg['backbone']['in_channels'] == 2
    assert main(['finetune', '--data', str(data), '--init', str(hf), '--steps', '2', '--out', str(tmp_path/'ft'), *TINY_FT]) == 0
    rep = json.loads((tmp_path/'ft'/'load_report.json').read_text())
    assert not rep['missing'] and not rep['unexpected'] and len(rep['loaded']) > 100
    # with a label-efficiency result (tidy results.csv as ssl3d.experiments writes it) the card shows it
    (tmp_path/'results.csv').write_text('method,dataset,label_fraction,seed,class,metric,value\n'
                                        'vectorpose,D,0.25,0,liver,dice,0.4\nvectorpose,D,0.25,1,liver,dice,0.6\nrandom,D,0.25,0,liver,dice,0.1\n')
    assert main(['export', '--format', 'hf', '--model', str(pre), '--out', str(tmp_path/'hf2'), '--results', str(tmp_path/'results.csv')]) == 0
    assert '| 0.25 | 0.500 | 2 |' in (tmp_path/'hf2'/'README.md').read_text()
    assert str(tmp_path) not in (tmp_path/'hf2'/'config.json').read_text()  # no local paths published


def test_hf_scheme_fails_at_once_without_hub(tmp_path, monkeypatch, capsys):
    data = tmp_path/'d'
    monkeypatch.setitem(sys.modules, 'huggingface_hub', None)  # as if not installed
    assert main(['finetune', '--data', str(data), '--init', 'hf://someone/ssl3d-model', '--out', str(tmp_path/'x')]) == 2
    assert 'needs huggingface_hub' in capsys.readouterr().err
    fake = types.ModuleType('huggingface_hub')  # installed but the hub is unreachable
    def offline(**kw): raise OSError('Cannot reach https://huggingface.co: offline mode is enabled')
    fake.snapshot_download = offline
    monkeypatch.setitem(sys.modules, 'huggingface_hub', fake)
    with pytest.raises(Ssl3dError, match=r"cannot fetch 'someone/ssl3d-model'.*--init DIR"): read_pretrained('hf://someone/ssl3d-model')


@pytest.mark.slow
def test_tensorboard_logger(nn_run, tmp_path, monkeypatch, capsys):
    root, data, _ = nn_run
    pytest.importorskip('tensorboard')
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    assert main(['pretrain', '--data', str(data), '--out', str(tmp_path/'tb'), '--logger', 'tensorboard', *TINY_PRE]) == 0
    ea = EventAccumulator(str(tmp_path/'tb'/'tb')); ea.Reload()
    assert {'train/loss', 'train/lr', 'train/vp', 'train/bfr'} <= set(ea.Tags()['scalars'])
    assert [e.step for e in ea.Scalars('train/loss')] == [1, 2]
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)  # the extra is missing
    assert main(['pretrain', '--data', str(data), '--out', str(tmp_path/'tb2'), '--logger', 'tensorboard', *TINY_PRE]) == 2
    assert "needs the tensorboard extra" in capsys.readouterr().err


@pytest.mark.slow
def test_online_probe_in_log_and_plot(nn_run, tmp_path):
    root, data, _ = nn_run
    out = tmp_path/'probe'
    assert main(['pretrain', '--data', str(data), '--out', str(out), '--probe-every', '1', '--probe-volumes', '1',
                 '--probe-val-volumes', '1', '--probe-steps', '30', *TINY_PRE]) == 0
    log, ev = _rows(out/'log.csv'), _rows(out/'eval.csv')
    assert [int(r['step']) for r in ev] == [1, 2] and 'probe_dice' in log[0]
    assert [float(r['probe_dice']) for r in log] == [float(r['probe_dice']) for r in ev]
    assert all(0 <= float(r['probe_dice']) <= 1 for r in ev)
    assert (out/'probe.png').stat().st_size > 1000
    assert json.loads((out/'config.json').read_text())['provenance']['probe']['volumes'] == 1
    # off by default for presets other than cpu-small (the tiny run above has no probe files)
    assert not (root/'pre'/'eval.csv').exists() and 'probe_dice' not in (root/'pre'/'log.csv').read_text()
