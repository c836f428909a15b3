"""ssl3d.evaluate: file round trips, subjects, bad inputs, and import without pandas."""
import json, math, subprocess, sys

import nibabel as nib
import numpy as np
import pytest
import torch
import torchio as tio

from ssl3d.core import Ssl3dError
from ssl3d.evaluate import (METRICS, compare_table, evaluate_dataset, evaluate_volumes, format_table, plot_predictions,
                            read_metrics, save_prediction, segmentation_metrics, sliding_window_predict,
                            spacing_from_affine, summarize_metrics, write_metrics)


def conv1x1(weights, bias):
    m = torch.nn.Conv3d(1, len(weights), 1)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(weights, dtype=torch.float32).view(-1, 1, 1, 1, 1))
        m.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return m


def as_dict(rows): return {(r['class'], r['metric']): r['value'] for r in rows}


# --- sliding window -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('shape,patch', [((45, 33, 70), 32), ((7, 9, 11), 32), ((33, 65, 31), (32, 48, 16)),
                                         ((64, 64, 32), 64)])
@pytest.mark.parametrize('mode', ['gaussian', 'constant'])
def test_sliding_window_identity(shape, patch, mode):
    """A voxel-wise model is reproduced exactly for any size: the blending weights normalise out."""
    seen = []
    net = conv1x1([1.0, -3.0], [0.0, 2.0])
    def model(x):
        seen.append(tuple(x.shape[2:]))
        return net(x)
    x = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(1))
    y = sliding_window_predict(model, x, patch, mode=mode)
    assert y.shape == (1, 2, *shape) and y.dtype == torch.float32
    torch.testing.assert_close(y[:, 0], x[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(y[:, 1], 2 - 3 * x[:, 0], atol=1e-5, rtol=0)
    assert seen and all(s % 32 == 0 for t in seen for s in t)   # every window padded to the network stride


def test_sliding_window_batch_and_train_state():
    net = conv1x1([2.0], [1.0]).train()
    bn = torch.nn.Sequential(net, torch.nn.BatchNorm3d(1)).train()
    x = torch.rand(3, 1, 20, 20, 20)
    y = sliding_window_predict(bn, x, 16, size_multiple=16)
    assert y.shape == x.shape and bn.training and bn[1].training
    # eval mode during inference: fresh BatchNorm running stats are (0, 1) → output = (2x+1)/sqrt(1+eps)
    torch.testing.assert_close(y, (2 * x + 1) / math.sqrt(1 + 1e-5), atol=1e-5, rtol=0)
    assert bn[1].num_batches_tracked.item() == 0   # running statistics untouched


def test_sliding_window_bad_inputs():
    net = conv1x1([1.0], [0.0])
    x = torch.rand(1, 1, 8, 8, 8)
    with pytest.raises(Ssl3dError, match=r'patch_size=\(8, 8\)'): sliding_window_predict(net, x, (8, 8))
    with pytest.raises(Ssl3dError, match='overlap=-0.1'): sliding_window_predict(net, x, 8, overlap=-0.1)
    with pytest.raises(Ssl3dError, match='size_multiple=0'): sliding_window_predict(net, x, 8, size_multiple=0)
    with pytest.raises(Ssl3dError, match='got shape'): sliding_window_predict(net, torch.rand(8, 8), 8)


# --- metrics ------------------------------------------------------------------------------------------------------

def test_large_masks_no_integer_overflow():
    """Counts far above 255 voxels (the masks are uint8 one-hots) still give the exact Dice/IoU."""
    a = np.zeros((50, 50, 50), np.int64); b = np.zeros_like(a)
    a[5:45, 5:45, 5:45] = 1; b[15:45, 5:45, 5:45] = 1       # |A| = 64000, |B| = 48000, |A∩B| = 48000
    r = as_dict(segmentation_metrics(a, b, 2, (1, 1, 1), metrics=('dice', 'iou')))
    assert r['1', 'dice'] == pytest.approx(2 * 48000 / 112000)
    assert r['1', 'iou'] == pytest.approx(48000 / 64000)


def test_cubes_anisotropic_hd95_nsd():
    a = np.zeros((12, 12, 12), np.int64); b = np.zeros_like(a)
    a[4:8, 4:8, 4:8] = 1; b[4:8, 4:8, 5:9] = 1               # shifted 1 voxel = 3 mm along Z
    r = as_dict(segmentation_metrics(a, b, 2, (1, 1, 3), metrics=METRICS, nsd_tolerance=1.0))
    assert r['1', 'hd95'] == 3.0 and r['1', 'hd'] == 3.0
    assert r['1', 'nsd'] == pytest.approx(5 / 7)
    assert as_dict(segmentation_metrics(a, b, 2, (1, 1, 3), nsd_tolerance=3.0))['1', 'nsd'] == 1.0
    # the same offset along an axis with 0.5 mm spacing
    assert as_dict(segmentation_metrics(a, b, 2, (2, 2, 0.5)))['1', 'hd95'] == 0.5


def test_tensor_and_labelmap_inputs():
    lab = torch.zeros(1, 10, 10, 10, dtype=torch.long); lab[0, 2:6, 2:6, 2:6] = 1
    lm = tio.LabelMap(tensor=lab, affine=np.diag([2., 2., 2., 1.]))
    rows = segmentation_metrics(lm, lab.float(), 2, spacing_from_affine(lm.affine), volume='v', class_names=['bg', 'x'])
    assert [(r['volume'], r['class'], r['metric'], r['value']) for r in rows] == \
        [('v', 'x', 'dice', 1.0), ('v', 'x', 'iou', 1.0), ('v', 'x', 'hd95', 0.0), ('v', 'x', 'nsd', 1.0)]


def test_metric_bad_inputs():
    lab = np.zeros((6, 6, 6), np.int64)
    with pytest.raises(Ssl3dError, match='n_classes=1'): segmentation_metrics(lab, lab, 1, 1)
    with pytest.raises(Ssl3dError, match='spacing='): segmentation_metrics(lab, lab, 2, (1, 0, 1))
    with pytest.raises(Ssl3dError, match='nsd_tolerance=-1'): segmentation_metrics(lab, lab, 2, 1, nsd_tolerance=-1)
    with pytest.raises(Ssl3dError, match='label: expected a label map'): segmentation_metrics(lab, lab[0], 2, 1)
    with pytest.raises(Ssl3dError, match=r'pred: values in \[-1, -1\]'): segmentation_metrics(lab - 1, lab, 2, 1)


# --- files --------------------------------------------------------------------------------------------------------

def test_write_read_metrics_nan_round_trip(tmp_path):
    rows = [dict(volume='a', **{'class': 'liver'}, metric='dice', value=0.5),
            dict(volume='a', **{'class': 'liver'}, metric='hd95', value=float('nan')),
            dict(volume='b', **{'class': 'liver'}, metric='dice', value=1.0),
            dict(volume='b', **{'class': 'liver'}, metric='hd95', value=2.5)]
    summary = write_metrics(rows, tmp_path, extra=dict(run='x'))
    back = read_metrics(tmp_path)
    assert [r['value'] for r in back][:1] == [0.5] and math.isnan(back[1]['value']) and back[2:] == rows[2:]
    text = (tmp_path / 'metrics.json').read_text()
    js = json.loads(text, parse_constant=lambda c: pytest.fail(f'non-standard JSON constant {c}'))
    assert js['run'] == 'x' and js['per_class']['liver']['hd95'] == dict(mean=2.5, std=0.0, n=1, n_nan=1)
    assert js['per_volume']['a']['hd95'] is None                   # NaN → null
    assert summary['mean']['dice']['mean'] == 0.75
    assert (tmp_path / 'metrics.csv').read_text().splitlines()[0] == 'volume,class,metric,value'
    with pytest.raises(Ssl3dError, match='file not found'): read_metrics(tmp_path / 'nope.csv')


def test_dataframe_input():
    pd = pytest.importorskip('pandas')
    rows = [dict(volume=v, **{'class': 'k'}, metric='dice', value=x) for v, x in (('a', 0.5), ('b', 1.0))]
    df = pd.DataFrame(rows)
    assert format_table(df, metrics=['dice']) == format_table(rows, metrics=['dice'])
    assert summarize_metrics(df)['per_class']['k']['dice']['mean'] == 0.75
    assert 'dice r1' in compare_table({'r1': df, 'r2': rows}, metrics=['dice'])
    with pytest.raises(Ssl3dError, match='missing'): summarize_metrics(df.drop(columns='metric'))


def test_save_prediction_round_trip(tmp_path):
    pred = np.random.default_rng(0).integers(0, 300, (9, 7, 5))    # > 255 labels need int16
    aff = np.array([[0, -1.5, 0, 10], [0.7, 0, 0, -3], [0, 0, 4, 2], [0, 0, 0, 1]])
    p = save_prediction(pred, aff, tmp_path / 'x' / 'p.nii.gz')
    img = nib.load(p)
    assert img.shape == pred.shape and img.get_data_dtype() == np.int16
    np.testing.assert_allclose(img.affine, aff, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(img.dataobj), pred)
    assert spacing_from_affine(aff) == pytest.approx((0.7, 1.5, 4.0))
    p2 = save_prediction(torch.ones(1, 3, 3, 3, dtype=torch.long), (1, 2, 3), tmp_path / 'q.nii.gz')
    np.testing.assert_allclose(nib.load(p2).affine, np.diag([1, 2, 3, 1.]))
    with pytest.raises(Ssl3dError, match='4x4 affine'): save_prediction(pred, np.eye(3), tmp_path / 'r.nii.gz')


def _subject(i, shape, spacing):
    lab = torch.zeros(1, *shape, dtype=torch.long)
    lab[0, 2:shape[0] // 2, 2:-2, 1:-1] = 1; lab[0, shape[0] // 2 + 1:-2, 3:-3, 2:-2] = 2
    img = lab.float() * 0.5                                              # intensities 0, 0.5, 1 per class
    aff = np.diag(list(spacing) + [1.0]); aff[:3, 3] = (-10, 5, 7)
    return tio.Subject(image=tio.ScalarImage(tensor=img, affine=aff), label=tio.LabelMap(tensor=lab, affine=aff), id=f's{i}')


def test_evaluate_dataset_end_to_end(tmp_path, capsys):
    model = conv1x1([0.0, 1.0, 2.0], [0.0, -0.25, -1.0])                  # perfect for intensities 0/0.5/1
    subjects = [_subject(0, (40, 21, 13), (0.8, 0.8, 2.5)), _subject(1, (17, 70, 35), (1.0, 1.0, 1.0))]
    rows = evaluate_dataset(model, subjects, 3, patch_size=32, out_dir=tmp_path, class_names=['bg', 'a', 'b'])
    assert len(rows) == 2 * 2 * 4 and {r['volume'] for r in rows} == {'s0', 's1'}
    assert all(r['value'] == {'dice': 1, 'iou': 1, 'hd95': 0, 'nsd': 1}[r['metric']] for r in rows)
    out = capsys.readouterr().out
    assert 'mean' in out and '100.00' in out
    for s in subjects:
        img = nib.load(tmp_path / 'predictions' / f"{s['id']}.nii.gz")
        assert img.shape == s['image'].spatial_shape
        np.testing.assert_allclose(img.affine, s['image'].affine, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(img.dataobj), s['label'].data[0].numpy())
    js = json.loads((tmp_path / 'metrics.json').read_text())
    assert js['settings']['patch_size'] == [32, 32, 32] and js['mean']['dice']['mean'] == 1.0
    assert read_metrics(tmp_path) == rows


def test_evaluate_errors(tmp_path):
    model = conv1x1([1.0, 2.0], [0.0, 0.0])
    s = _subject(0, (10, 10, 10), (1, 1, 1))
    with pytest.raises(Ssl3dError, match='2 output channels but n_classes=3'):
        evaluate_dataset(model, [s], 3, 16, verbose=False)
    with pytest.raises(Ssl3dError, match="has no 'label'"):
        evaluate_dataset(model, [tio.Subject(image=s['image'], id='u')], 2, 16)
    with pytest.raises(Ssl3dError, match='each item must be'):
        evaluate_volumes(model, [('a', s['image'].data)], 2, 16)
    rows = evaluate_volumes(model, [('a', s['image'].data, s['label'].data.clamp(max=1), (1, 1, 1))], 2, 16, out_dir=None, verbose=False)
    assert len(rows) == 4 and not any(tmp_path.iterdir())


def test_plot_predictions_shapes():
    import matplotlib.pyplot as plt
    s = _subject(0, (30, 24, 12), (1, 1, 2))
    lab = s['label'].data[0]
    fig = plot_predictions(s['image'], s['label'], {'same': lab, 'none': torch.zeros_like(lab)}, slice_axis=0, slices=[5, 20])
    assert len(fig.axes) == 2 * 4
    assert [a.get_title() for a in fig.axes[:4]] == ['image', 'ground truth', 'same\nDice 1.000', 'none\nDice 0.000']
    plt.close(fig)
    with pytest.raises(Ssl3dError, match='shape'):
        plot_predictions(s['image'], s['label'], {'bad': lab[:5]})


@pytest.mark.slow
def test_import_and_use_without_pandas(tmp_path):
    """pandas is an optional extra: the module imports and writes reports when pandas cannot be imported."""
    code = f"""
import sys; sys.modules['pandas'] = None
import numpy as np, torch
import ssl3d.evaluate as ev
a = np.zeros((8, 8, 8), np.int64); a[2:6, 2:6, 2:6] = 1
rows = ev.segmentation_metrics(a, a, 2, 1.0, volume='v')
ev.write_metrics(rows, {str(tmp_path)!r})
print(ev.format_table(ev.read_metrics({str(tmp_path)!r})))
"""
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '100.00' in r.stdout and (tmp_path / 'metrics.json').exists()
