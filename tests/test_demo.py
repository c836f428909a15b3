"""ssl3d.demo: `ssl3d demo` end to end with a minuscule budget prints its table, writes its files, and a re-run skips
every finished stage."""
import json
import pytest

import ssl3d.demo  # registers the command
from ssl3d.cli import main
from ssl3d.core import Ssl3dError


TINY = ['--pretrain-steps', '3', '--finetune-steps', '4', '--n', '5', '--n-unlabelled', '0', '--shape', '48', '36', '48',
        '--spacing', '6', '6', '6', '--finetune-preset', 'tiny', '--device', 'cpu']


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path/'demo'
    assert main(['demo', '--out', str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert 'dice random' in text and 'dice vectorpose' in text and 'hd95 random' in text and 'mean' in text
    for f in ('results.json', 'results.csv', 'demo.png', 'table.txt', 'plan.json', 'splits.json', 'pretrain/final.pt',
              'finetune_random/best.pt', 'finetune_vectorpose/best.pt', 'eval_random/metrics.csv', 'eval_vectorpose/metrics.csv'):
        assert (out/f).exists(), f
    res = json.loads((out/'results.json').read_text())
    assert set(res['mean']) == {'random', 'vectorpose'} and res['plan']['finetune_steps'] == 4
    lab = [json.loads((out/f'finetune_{k}'/'finetune.json').read_text())['labelled_ids'] for k in ('random', 'vectorpose')]
    assert lab[0] == lab[1]
    # a re-run with the same --out skips every stage and prints the same table
    mtime = (out/'finetune_vectorpose'/'best.pt').stat().st_mtime
    assert main(['demo', '--out', str(out)]) == 0
    again = capsys.readouterr().out
    assert 'resuming' in again and (out/'finetune_vectorpose'/'best.pt').stat().st_mtime == mtime
    assert (out/'table.txt').read_text().strip() in again
    # other settings in the same folder are refused
    with pytest.raises(Ssl3dError, match='other settings'): ssl3d.demo.demo(out, n=7, verbose=False)


def test_bad_setting_fails_before_anything_is_written(tmp_path):
    out = tmp_path / 'demo'
    with pytest.raises(Ssl3dError, match=r'DemoConfig\.label_fraction=0'): ssl3d.demo.demo(out, label_fraction=0, verbose=False)
    assert not out.exists()
