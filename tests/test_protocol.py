"""The comparison protocol of issue 12: random init and every registered method's checkpoint build the same
fine-tuning network (architecture fingerprints), body boxes and VectorPOSE landmarks do not depend on the CT window
through the real pretraining data path, missed classes are charged the HD95 penalty and counted, and the paired
statistics on a table of several methods."""
import dataclasses, math
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from ssl3d.core import Ssl3dError
from ssl3d.architecture import architecture_fingerprint
from ssl3d.checkpoints import build_segmentation_model
from ssl3d.methods.core import METHODS, build_method
from ssl3d.pretrain import _load_method_modules, pretrain_subjects
from ssl3d.checkpoints import save_checkpoint
from ssl3d.evaluate import segmentation_metrics
from ssl3d.experiments import paired_tests, holm, summary_table, check_architectures

SIZE = (32, 32, 32)
KNOWN = {'vectorpose', 'models_genesis', 'pgl', 'byol', 'moco'}


def _tiny_method(name):
    "A registered method with its smallest preset and, where the config has the field, the 'tiny' backbone."
    cls = METHODS.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)} if dataclasses.is_dataclass(cls.Config) else set()
    ov = {'backbone': 'tiny'} if 'backbone' in fields else {}
    preset = 'tiny' if 'tiny' in cls.presets() else 'cpu-small'
    torch.manual_seed(0)
    return build_method(name, ov, preset=preset)


def _transferable():
    _load_method_modules()
    return [n for n in METHODS.names() if isinstance(getattr(_tiny_method(n), 'backbone_kwargs', None), dict)]


def test_every_registered_method_fine_tunes_on_the_random_init_network(tmp_path):
    """Acceptance (issue 12, part 1): for each registered method, a saved checkpoint and random init built with the
    checkpoint's backbone kwargs give identical fine-tuning networks; the weights really come from the checkpoint."""
    names = _transferable()
    assert KNOWN <= set(names), names          # methods added later are covered automatically
    for name in names:
        m = _tiny_method(name)
        ck = tmp_path / name / 'final.pt'
        transfer = {k: (v.state_dict() if v is not None else None) for k, v in m.transfer().items()}  # as Trainer saves final.pt
        save_checkpoint(ck, transfer=transfer, provenance=dict(method=name, backbone=dict(m.backbone_kwargs)))
        net_p, info = build_segmentation_model(ck, n_classes=3)
        net_r, _ = build_segmentation_model('none', n_classes=3, backbone=dict(m.backbone_kwargs))
        fp, fr = architecture_fingerprint(net_p, SIZE), architecture_fingerprint(net_r, SIZE)
        assert fp['hash'] == fr['hash'], (name, fp['description'], fr['description'])
        assert info['load_report'].loaded, name
        enc = transfer['encoder']
        k = next(iter(enc))
        assert torch.equal(net_p.state_dict()[f'encoder.{k}'].cpu(), enc[k].cpu()), name


def test_layouts_differ_and_a_standard_two_view_checkpoint_matches_random():
    """The two-view default layout ('pgl') is another network than the standard one; pretrained with layout='standard'
    a two-view method's checkpoint builds the random-init standard network."""
    _load_method_modules()
    std, _ = build_segmentation_model('none', 3, backbone=dict(preset='tiny'))
    pgl_m = _tiny_method('pgl')
    assert pgl_m.backbone_kwargs['layout'] == 'pgl'
    pgl_net, _ = build_segmentation_model('none', 3, backbone=dict(pgl_m.backbone_kwargs))
    assert architecture_fingerprint(std, SIZE)['hash'] != architecture_fingerprint(pgl_net, SIZE)['hash']
    for name in ('pgl', 'byol', 'moco'):
        m = build_method(name, dict(backbone='tiny', layout='standard', input_size=(32, 32, 32)), preset='cpu-small')
        net, _ = build_segmentation_model('none', 3, backbone=dict(m.backbone_kwargs))
        assert architecture_fingerprint(net, SIZE)['hash'] == architecture_fingerprint(std, SIZE)['hash'], name


def test_body_box_and_landmark_do_not_depend_on_the_window(tmp_path):
    "Acceptance (part 2) through the pretraining data path: `pretrain_subjects` with two CT windows."
    from ssl3d.phantoms import write_phantom_dataset
    write_phantom_dataset(tmp_path / 'd', 'abdomen', n=1, n_test=0, seed=3, shape=(64, 56, 40), spacing=(5, 5, 5))
    items = []
    for hu in ((-1000, 1000), (-175, 250)):
        subs, _ = pretrain_subjects(tmp_path / 'd', split='all', spacing=(6, 6, 6), hu_range=hu)
        m = build_method('vectorpose', dict(backbone='tiny', crop_size=32), preset='cpu-small')
        items.append((subs[0], m.prepare(subs[0], np.random.default_rng(7))))
    (a, ia), (b, ib) = items
    assert a.spatial_shape == b.spatial_shape
    assert torch.equal(a['body'].data, b['body'].data)
    assert torch.equal(ia['landmark'], ib['landmark']) and torch.equal(ia['geometry'], ib['geometry'])
    assert float(ia['radius']) == pytest.approx(float(ib['radius']))


def test_hd95_penalty_and_miss_count():
    "Part 3: a missed class costs the image diagonal in mm; the miss is counted, both-empty is excluded."
    lab = np.zeros((20, 10, 8), np.int64); lab[2:6, 2:6, 2:6] = 1; lab[10:14, 2:6, 2:6] = 2
    pred = np.zeros_like(lab); pred[2:6, 2:6, 2:6] = 1                 # class 2 missed, class 3 absent in both
    rows = segmentation_metrics(pred, lab, 4, spacing=(1.0, 2.0, 2.5), metrics=('dice', 'hd95', 'miss'))
    r = {(d['class'], d['metric']): d['value'] for d in rows}
    assert r['2', 'hd95'] == pytest.approx(math.sqrt(20 ** 2 + 20 ** 2 + 20 ** 2))
    assert (r['1', 'hd95'], r['1', 'miss'], r['2', 'miss']) == (0.0, 0.0, 1.0)
    assert math.isnan(r['3', 'hd95']) and math.isnan(r['3', 'miss'])
    tidy = pd.DataFrame([dict(method='m', dataset='d', label_fraction=0.1, seed=0, **d) for d in rows])
    s = summary_table(tidy, metric='hd95')
    assert (int(s['misses'][0]), int(s['cases'][0])) == (1, 2)
    assert s['mean'][0] == pytest.approx((0.0 + math.sqrt(1200)) / 2)   # the miss is in the mean, not dropped


def _table(rng, methods, seeds=range(6), fractions=(0.1, 1.0), arch='A'):
    rows = []
    for f in fractions:
        base = rng.normal(0.5, 0.05, len(seeds))         # the seed effect every method shares (same subset)
        for k, m in enumerate(methods):
            for s, b in zip(seeds, base):
                rows.append(dict(method=m, dataset='d', label_fraction=f, seed=s, **{'class': 'c'}, metric='dice',
                                 value=b + 0.02 * k + rng.normal(0, 0.01), architecture=arch, subset=f'{f}-{s}'))
    return pd.DataFrame(rows)


def test_paired_tests_match_scipy_and_holm_spans_the_table():
    "Part 4: each row is scipy's paired t / Wilcoxon on the seed-paired run scores; Holm over all rows."
    df = _table(np.random.default_rng(0), ['random', 'mg', 'vp'])
    pt = paired_tests(df, pairs=[('vp', 'mg')])
    assert len(pt) == 2 * 3 and set(pt['architecture']) == {'A'}
    for _, r in pt.iterrows():
        g = df[df['label_fraction'] == r['label_fraction']]
        x = g[g['method'] == r['method']].sort_values('seed')['value'].to_numpy()
        y = g[g['method'] == r['reference']].sort_values('seed')['value'].to_numpy()
        assert r['p_t'] == pytest.approx(stats.ttest_rel(x, y).pvalue)
        assert r['p_wilcoxon'] == pytest.approx(stats.wilcoxon(x, y).pvalue)
        assert r['diff'] == pytest.approx(np.mean(x - y))
    p = pt['p_t'].to_numpy(); order = np.argsort(p); m = len(p)
    expect = np.maximum.accumulate(np.minimum(1, (m - np.arange(m)) * p[order]))
    assert np.allclose(pt['p_holm'].to_numpy()[order], expect)


def test_paired_tests_refuse_mixed_networks_without_their_own_control():
    rng = np.random.default_rng(1)
    df = pd.concat([_table(rng, ['random', 'mg']), _table(rng, ['pgl'], arch='B')])
    with pytest.raises(Ssl3dError, match="architecture=B: no 'random' control runs"):
        paired_tests(df)
    with pytest.raises(Ssl3dError, match="rows fine-tuned on different networks cannot be compared"):
        summary_table(df)
    ok = pd.concat([df, _table(rng, ['random'], arch='B')])
    pt = paired_tests(ok)
    assert sorted(map(tuple, pt[['architecture', 'method']].drop_duplicates().values.tolist())) == [('A', 'mg'), ('B', 'pgl')]
    check_architectures(ok, by=('architecture',))                     # within each network: fine
