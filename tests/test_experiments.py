"""ssl3d.experiments: resumable grids (in-process and parallel), tidy CSV round trips, statistics against scipy,
papermill notebooks, the `ssl3d grid` command end to end, and an import that stays light."""
import json, math, subprocess, sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from ssl3d.core import Ssl3dError
from ssl3d.experiments import (TIDY_COLUMNS, GridRun, append_results, cell_done, cell_id, format_mean_sd, grid_cells,
                               plot_class_heatmap, plot_label_efficiency, read_results, run_grid, run_notebook,
                               run_notebook_grid, run_scores, save_figure, summary_table, ttest_best_vs_second,
                               write_results)


def row(method, seed, cls, value, fraction=0.1, metric='dice', dataset='d'):
    return dict(method=method, dataset=dataset, label_fraction=fraction, seed=seed, **{'class': cls}, metric=metric, value=value)


# --- import stays light ------------------------------------------------------------------------------------------

def test_import_does_not_load_optional_extras():
    code = ("import sys, json, ssl3d.experiments\n"
            "print(json.dumps([m for m in ('papermill', 'seaborn', 'pandas', 'scipy.stats', 'matplotlib.pyplot') if m in sys.modules]))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


# --- grids -------------------------------------------------------------------------------------------------------

def counting(cell, cell_dir):
    """Counts its calls in the cell folder (works across processes); fails for method b, seed 1."""
    f = Path(cell_dir) / 'count.txt'
    f.write_text(str(int(f.read_text()) + 1 if f.exists() else 1))
    if cell == dict(method='b', seed=1): raise RuntimeError('diverged')


def counts(out, cells): return [int((Path(out) / cell_id(c) / 'count.txt').read_text()) for c in cells]


@pytest.mark.parametrize('processes', [1, 2])
def test_grid_is_resumable_and_failures_are_per_cell(tmp_path, processes):
    cells = grid_cells(method=['a', 'b'], seed=[0, 1])
    r1 = run_grid(cells, counting, tmp_path, processes=processes)
    assert r1.ran == ['method=a_seed=0', 'method=a_seed=1', 'method=b_seed=0']
    assert r1.failed == {'method=b_seed=1': 'RuntimeError: diverged'} and not r1.ok
    assert [cell_done(tmp_path / cell_id(c)) for c in cells] == [True, True, True, False]
    assert 'diverged' in (tmp_path / 'method=b_seed=1' / 'FAILED').read_text()
    assert json.loads((tmp_path / 'method=a_seed=1' / 'DONE').read_text())['cell'] == dict(method='a', seed=1)
    # second run: nothing finished is recomputed; only the failed cell is retried
    r2 = run_grid(cells, counting, tmp_path, processes=processes)
    assert r2.ran == [] and len(r2.skipped) == 3 and list(r2.failed) == ['method=b_seed=1']
    assert counts(tmp_path, cells) == [1, 1, 1, 2]
    # force: everything again
    r3 = run_grid(cells, counting, tmp_path, force=True, processes=processes)
    assert len(r3.ran) == 3 and r3.skipped == []
    assert counts(tmp_path, cells) == [2, 2, 2, 3]


def test_grid_counter_zero_on_rerun(tmp_path):
    calls = []
    cells = grid_cells(x=[1, 2, 3])
    run_grid(cells, lambda c, d: calls.append(c['x']), tmp_path)
    assert calls == [1, 2, 3]
    run_grid(cells, lambda c, d: calls.append(c['x']), tmp_path)
    assert calls == [1, 2, 3]                       # 0 cells ran
    run_grid(cells, lambda c, d: calls.append(c['x']), tmp_path, force=True)
    assert calls == [1, 2, 3, 1, 2, 3]              # all ran


def test_a_forced_rerun_that_fails_is_no_longer_done(tmp_path):
    run_grid([dict(x=1)], lambda c, d: None, tmp_path)
    assert cell_done(tmp_path / 'x=1')
    def boom(c, d): raise ValueError('bad')
    r = run_grid([dict(x=1)], boom, tmp_path, force=True)
    assert r.failed == {'x=1': 'ValueError: bad'} and not cell_done(tmp_path / 'x=1')


def test_cell_ids_and_bad_grids(tmp_path):
    assert cell_id(dict(method='vectorpose', fraction=0.1, seed=0)) == 'method=vectorpose_fraction=0.1_seed=0'
    assert cell_id(dict(path='/a/b c')) == 'path=a-b-c'
    long = cell_id(dict(name='x' * 300))
    assert len(long) <= 120 and long == cell_id(dict(name='x' * 300)) != cell_id(dict(name='x' * 299))
    with pytest.raises(Ssl3dError, match=r"repeated cells \['a=x-y'\]"):
        run_grid([dict(a='x y'), dict(a='x/y')], lambda c, d: None, tmp_path)
    with pytest.raises(Ssl3dError, match="axis 'seed' has no values"): grid_cells(seed=[])


# --- tidy results ------------------------------------------------------------------------------------------------

def test_tidy_round_trip_append_and_folder(tmp_path):
    rows = [row('vp', 0, 'LV', 0.8), row('vp', 0, 'LA', 0.7, fraction=float('nan'))]
    write_results(rows, tmp_path / 'a' / 'results.csv')
    back = read_results(tmp_path / 'a' / 'results.csv')
    assert tuple(back.columns) == TIDY_COLUMNS
    assert back['class'].tolist() == ['LV', 'LA'] and back['value'].tolist() == [0.8, 0.7]
    assert back['label_fraction'].iloc[0] == 0.1 and math.isnan(back['label_fraction'].iloc[1])
    append_results([row('mg', 1, 'LV', 0.6)], tmp_path / 'a' / 'results.csv')
    assert read_results(tmp_path / 'a' / 'results.csv')['method'].tolist() == ['vp', 'vp', 'mg']
    # a folder reads finished cells only
    write_results([row('x', 0, 'LV', 0.1)], tmp_path / 'b' / 'results.csv')
    with pytest.raises(Ssl3dError, match='no finished results'): read_results(tmp_path)
    (tmp_path / 'a' / 'DONE').write_text('{}')
    assert len(read_results(tmp_path)) == 3
    assert len(read_results(tmp_path, done_only=False)) == 4
    # class names that look like numbers stay strings; extra columns are kept
    write_results([dict(row('m', 0, '1', 0.5), volume='case_01')], tmp_path / 'c.csv')
    c = read_results(tmp_path / 'c.csv')
    assert c['class'].tolist() == ['1'] and c['volume'].tolist() == ['case_01']


def test_tidy_errors_name_the_file(tmp_path):
    pd.DataFrame({'method': ['a'], 'value': [1.0]}).to_csv(tmp_path / 'bad.csv', index=False)
    with pytest.raises(Ssl3dError, match=r"bad.csv: missing column\(s\) \['dataset', 'label_fraction', 'seed', 'class', 'metric'\]"):
        read_results(tmp_path / 'bad.csv')
    with pytest.raises(Ssl3dError, match='missing.csv: results file not found'): read_results(tmp_path / 'missing.csv')
    with pytest.raises(Ssl3dError, match="column 'value' is not numeric"):
        write_results([row('a', 0, 'c', 'high')], tmp_path / 'x.csv')
    assert not (tmp_path / 'x.csv').exists()


# --- statistics --------------------------------------------------------------------------------------------------

@pytest.fixture
def hand():
    """a: runs (0.6+0.8)/2 = 0.7 and (0.7+0.9)/2 = 0.8; b: 0.5, 0.5; c: 0.55, 0.65 (second-best). At 0.5 labels,
    b is best (0.9, 0.8) and a second (0.6, 0.7)."""
    rows = [row('a', 0, 'c1', .6), row('a', 0, 'c2', .8), row('a', 1, 'c1', .7), row('a', 1, 'c2', .9)]
    rows += [row('b', s, c, .5) for s in (0, 1) for c in ('c1', 'c2')]
    rows += [row('c', s, c, v) for s, v in ((0, .55), (1, .65)) for c in ('c1', 'c2')]
    rows += [row('a', s, c, v, fraction=0.5) for s, v in ((0, .6), (1, .7)) for c in ('c1', 'c2')]
    rows += [row('b', s, c, v, fraction=0.5) for s, v in ((0, .9), (1, .8)) for c in ('c1', 'c2')]
    rows += [row('a', 0, 'c1', 12.0, metric='hd95')]
    return pd.DataFrame(rows)


def test_summary_table_known_numbers(hand):
    s = summary_table(hand)
    got = {(r.method, r.label_fraction): (r.mean, r.sd, r.n) for r in s.itertuples()}
    assert got.keys() == {('a', 0.1), ('b', 0.1), ('c', 0.1), ('a', 0.5), ('b', 0.5)}
    np.testing.assert_allclose(got[('a', 0.1)], (0.75, math.sqrt(0.005), 2))
    np.testing.assert_allclose(got[('b', 0.1)], (0.5, 0.0, 2))
    np.testing.assert_allclose(got[('b', 0.5)], (0.85, math.sqrt(0.005), 2))
    assert s['label_fraction'].tolist() == [0.1, 0.1, 0.1, 0.5, 0.5]
    # per class, and a duplicated row of a class within a run is averaged, not double-weighted
    dup = pd.concat([hand, pd.DataFrame([row('a', 0, 'c2', .8)])])
    pd.testing.assert_frame_equal(summary_table(dup), s)
    pc = summary_table(hand[hand.label_fraction == 0.1], by=('method', 'class')).set_index(['method', 'class'])
    assert pc.loc[('a', 'c2'), 'mean'] == pytest.approx(0.85)
    # median of classes within a run
    assert run_scores(hand, class_agg='median')['value'].iloc[0] == pytest.approx(0.7)


def test_summary_errors(hand):
    with pytest.raises(Ssl3dError, match=r"metric='nsd' not in the results \(have \['dice', 'hd95'\]\)"):
        summary_table(hand, metric='nsd')
    two = pd.concat([hand, pd.DataFrame([row('a', 0, 'c1', .1, dataset='other')])])
    with pytest.raises(Ssl3dError, match='several datasets'): summary_table(two)
    assert set(summary_table(two, by=('dataset', 'method', 'label_fraction'))['dataset']) == {'d', 'other'}


def test_format_mean_sd_bolds_the_best(hand):
    lines = format_mean_sd(summary_table(hand)).splitlines()
    assert lines[0] == '| method | 10 % | 50 % |'
    assert lines[2] == '| a | **75.00 ± 7.07** | 65.00 ± 7.07 |'
    assert lines[3] == '| b | 50.00 ± 0.00 | **85.00 ± 7.07** |'
    assert lines[4] == '| c | 60.00 ± 7.07 | – |'
    assert format_mean_sd(hand, metric='hd95', scale=1, digits=1, higher_is_better=False).splitlines()[2] == '| a | **12.0** |'


def test_ttest_matches_scipy_and_ranks(hand):
    t = ttest_best_vs_second(hand).set_index('label_fraction')
    assert t.loc[0.1, ['best', 'second']].tolist() == ['a', 'c']
    assert t.loc[0.5, ['best', 'second']].tolist() == ['b', 'a']
    ref = scipy.stats.ttest_ind([0.7, 0.8], [0.55, 0.65])
    assert t.loc[0.1, 'p'] == pytest.approx(ref.pvalue) and t.loc[0.1, 't'] == pytest.approx(ref.statistic)
    assert t.loc[0.5, 'p'] == pytest.approx(scipy.stats.ttest_ind([0.9, 0.8], [0.6, 0.7]).pvalue)
    welch = ttest_best_vs_second(hand, equal_var=False).set_index('label_fraction')
    assert welch.loc[0.1, 'p'] == pytest.approx(scipy.stats.ttest_ind([0.7, 0.8], [0.55, 0.65], equal_var=False).pvalue)
    one_seed = ttest_best_vs_second(hand[hand.seed == 0])
    assert one_seed['p'].isna().all() and one_seed['n_best'].tolist() == [1, 1]
    single = ttest_best_vs_second(hand[hand.method == 'a'])
    assert single['second'].isna().all() and single['p'].isna().all()
    # lower is better (distances): 'a' is the only method with hd95
    assert ttest_best_vs_second(hand, metric='hd95', higher_is_better=False)['best'].tolist() == ['a']


def test_figures_are_written_as_png_and_pdf(hand, tmp_path):
    import matplotlib.pyplot as plt
    fig = plot_label_efficiency(hand, tmp_path / 'fig' / 'eff')
    assert (tmp_path / 'fig' / 'eff.png').read_bytes()[:4] == b'\x89PNG'
    assert (tmp_path / 'fig' / 'eff.pdf').read_bytes()[:4] == b'%PDF'
    plt.close(fig)
    fig = plot_class_heatmap(hand, tmp_path / 'heat', label_fraction=0.5)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ['a', 'b']
    plt.close(fig)
    with pytest.raises(Ssl3dError, match='choose one'): plot_class_heatmap(hand)
    with pytest.raises(Ssl3dError, match='label_fraction=0.3: no rows'): plot_class_heatmap(hand, label_fraction=0.3)
    fig, _ = plt.subplots()
    png, pdf = save_figure(fig, tmp_path / 'x')
    assert (png.name, pdf.name) == ('x.png', 'x.pdf') and sorted(p.name for p in tmp_path.glob('x*')) == ['x.pdf', 'x.png']
    plt.close(fig)


# --- papermill ---------------------------------------------------------------------------------------------------

@pytest.fixture
def tiny_nb(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1\nmethod = 'toy'", metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell("assert x != 13, 'unlucky x'"),
                nbformat.v4.new_code_cell(
                    "from ssl3d.experiments import write_results\n"
                    "write_results([dict(method=method, dataset='none', label_fraction=1.0, seed=0, "
                    "**{'class': 'all'}, metric='x', value=x)], 'results.csv')")]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    path = tmp_path / 'tiny.ipynb'
    nbformat.write(nb, path)
    return path


def test_run_notebook_injects_parameters(tiny_nb, tmp_path):
    out = run_notebook(tiny_nb, tmp_path / 'one', dict(x=3))
    assert out == (tmp_path / 'one' / 'executed.ipynb').resolve()
    assert read_results(tmp_path / 'one' / 'results.csv')['value'].tolist() == [3.0]
    executed = nbformat.read(out, 4)
    assert any('injected-parameters' in c.metadata.get('tags', []) for c in executed.cells)
    with pytest.raises(Ssl3dError, match="tiny.ipynb: cell .* raised AssertionError: unlucky x"):
        run_notebook(tiny_nb, tmp_path / 'bad', dict(x=13))
    assert (tmp_path / 'bad' / 'executed.ipynb').exists()          # kept for inspection
    with pytest.raises(Ssl3dError, match='nope.ipynb: notebook not found'): run_notebook(tmp_path / 'nope.ipynb', tmp_path)


@pytest.mark.slow
def test_run_notebook_grid_two_processes(tiny_nb, tmp_path):
    run = tmp_path / 'run'
    r = run_notebook_grid(tiny_nb, grid_cells(x=[2, 13, 3]), run, processes=2, parameters=dict(method='fixed'))
    assert isinstance(r, GridRun) and r.ran == ['x=2', 'x=3'] and list(r.failed) == ['x=13']
    assert 'unlucky x' in r.failed['x=13']
    for c in ('x=2', 'x=3'):
        assert {'executed.ipynb', 'results.csv', 'DONE', 'cell.json'} <= {p.name for p in (run / c).iterdir()}
    assert (run / 'x=13' / 'executed.ipynb').exists() and not cell_done(run / 'x=13')
    merged = read_results(run / 'results.csv')
    assert merged[['method', 'value']].values.tolist() == [['fixed', 2.0], ['fixed', 3.0]]
    grid = json.loads((run / 'grid.json').read_text())
    assert grid['parameters'] == dict(method='fixed') and list(grid['cells']) == ['x=2', 'x=13', 'x=3']
    assert (run / 'source.ipynb').exists()
    r2 = run_notebook_grid(tiny_nb, grid_cells(x=[2, 3]), run)
    assert r2.ran == [] and r2.skipped == ['x=2', 'x=3'] and r2.results == run / 'results.csv'


def _ssl3d(*args, **kw):
    # the command is registered by ssl3d.experiments; the CLI lists it once ssl3d.cli.COMMAND_MODULES holds the module
    code = 'import sys, ssl3d.experiments; from ssl3d.cli import main; sys.exit(main(sys.argv[1:]))'
    return subprocess.run([sys.executable, '-c', code, *map(str, args)], capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_cli_grid_end_to_end(tiny_nb, tmp_path, capsys):
    run = tmp_path / 'cli'
    r = _ssl3d('grid', tiny_nb, '--out', run, '-p', 'method', 'cli', '--axis', 'x', '3', '13', '--processes', '2')
    assert r.returncode == 1, r.stderr                                     # the x=13 cell failed
    assert 'FAILED x=13' in r.stdout and '1 ran, 0 already done, 1 failed' in r.stdout
    assert read_results(run / 'results.csv')[['method', 'value']].values.tolist() == [['cli', 3.0]]
    # the rest in-process (no kernel starts): skip finished cells, dry run, errors
    from ssl3d.cli import main
    def cli(*args):
        capsys.readouterr(); rc = main([str(a) for a in args]); out = capsys.readouterr(); return rc, out.out, out.err
    rc, out, _ = cli('grid', tiny_nb, '--out', run, '-p', 'method', 'cli', '--axis', 'x', '3')
    assert rc == 0 and '0 ran, 1 already done, 0 failed' in out
    rc, out, _ = cli('grid', tiny_nb, '--out', run, '--axis', 'method', 'a', 'b', '--axis', 'seed', '0', '1', '--dry-run')
    assert rc == 0 and out.split() == ['method=a_seed=0', 'method=a_seed=1', 'method=b_seed=0', 'method=b_seed=1']
    rc, _, err = cli('grid', tiny_nb, '--out', run, '--axis', 'x')
    assert rc == 2 and 'give a name and at least one value' in err
    rc, _, err = cli('grid', tmp_path / 'missing.ipynb', '--out', run)
    assert rc == 2 and 'missing.ipynb: notebook not found' in err
