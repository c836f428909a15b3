"""The offline docs build (scripts/build_docs.py): its checks fail on what a reader should never see."""
import json, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'scripts'))
import build_docs  # noqa: E402


def _nb(tmp_path, outputs):
    p = tmp_path / 'x.ipynb'
    cell = {'cell_type': 'code', 'source': 'x', 'metadata': {}, 'execution_count': None, 'outputs': outputs}
    p.write_text(json.dumps({'cells': [cell], 'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))
    return p


def test_check_outputs_flags_kernel_stderr_errors_and_long_reprs(tmp_path):
    good = _nb(tmp_path, [{'output_type': 'stream', 'name': 'stdout', 'text': 'loss 0.31\n'}])
    assert build_docs.check_outputs([good]) == []
    kernel = _nb(tmp_path, [{'output_type': 'stream', 'name': 'stderr',
                             'text': 'x.py:6: UserWarning: from ipykernel_24854 cell\n'}])
    assert "stored stderr shows 'ipykernel'" in build_docs.check_outputs([kernel])[0]
    err = _nb(tmp_path, [{'output_type': 'error', 'ename': 'ValueError', 'evalue': 'x', 'traceback': []}])
    assert 'stored output is an error (ValueError)' in build_docs.check_outputs([err])[0]
    long = _nb(tmp_path, [{'output_type': 'execute_result', 'metadata': {}, 'execution_count': None,
                           'data': {'text/plain': '\n'.join(f'(layer{i}): Conv3d' for i in range(117))}}])
    assert 'stored output has 117 lines' in build_docs.check_outputs([long])[0]
    path = _nb(tmp_path, [{'output_type': 'stream', 'name': 'stdout', 'text': 'wrote /work/main/runs/x\n'}])
    assert 'machine path' in build_docs.check_outputs([path])[0]


def test_check_page_flags_prompts_quarto_syntax_and_missing_api_entries():
    ok = '<div class="ssl3d-api" id="api-ssl3d.data.load_dataset"></div><pre>x</pre>'
    assert build_docs.check_page('p.html', ok, [('ssl3d.data', 'load_dataset')]) == []
    assert 'shows a prompt (In [ ]:)' in build_docs.check_page('p.html', '<div>In&nbsp;[&nbsp;]:</div>')[0]
    leak = '<a href="x">source</a>{target="_blank" style="float:right"}'
    assert 'shows quarto syntax' in build_docs.check_page('p.html', leak.replace('</a>', '</a>)'))[0]
    missing = build_docs.check_page('p.html', ok, [('ssl3d.data', 'make_subject')])
    assert missing == ['p.html: no API entry for ssl3d.data.make_subject']


def test_every_exported_symbol_is_placed_after_its_defining_cell():
    placed = {s for syms in build_docs.api_index().values() for s in syms}
    exported = build_docs.exported_symbols()
    assert ('ssl3d.data', 'load_dataset') in exported and len(exported) > 50
    assert set(exported) <= placed
    (nb, cell), = [k for k, v in build_docs.api_index().items() if ('ssl3d.data', 'load_dataset') in v]
    assert nb == '01_data.ipynb'
    src = ''.join(json.loads((ROOT / 'nbs' / nb).read_text())['cells'][cell]['source'])
    assert 'def load_dataset' in src


def test_api_entry_shows_signature_docstring_and_docments():
    h = build_docs.api_html('ssl3d.data', 'load_dataset')
    assert 'id="api-ssl3d.data.load_dataset"' in h
    assert "split=&#x27;training&#x27;" in h or "split='training'" in h
    assert 'dataset folder, its dataset.json, or a CSV manifest' in h  # the docments comment of `root`
    assert '<b>returns</b>' in h
