"""ssl3d.phantoms: determinism, anatomy invariants, MSD writer, CLI, and a round trip through ssl3d.data."""
import json
import nibabel as nib
import numpy as np
import pytest
from ssl3d.core import Ssl3dError
from ssl3d.phantoms import PHANTOM_PRESETS, make_phantom, write_phantom_dataset, phantom_labels

SMALL = (48, 48, 40)

def _arrays(s): return s['image'].numpy()[0], s['label'].numpy()[0]

def _centroid(s, name):
    k = PHANTOM_PRESETS[s['phantom']['preset']].labels.index(name) + 1
    idx = np.argwhere(s['label'].numpy()[0] == k).mean(0)
    A = s['image'].affine
    return A[:3, :3] @ idx + A[:3, 3]

@pytest.mark.parametrize('preset', ['abdomen', 'heart'])
@pytest.mark.parametrize('modality', ['ct', 'mr'])
def test_same_seed_is_bit_identical(preset, modality):
    a, b = make_phantom(preset, 7, SMALL, modality=modality), make_phantom(preset, 7, SMALL, modality=modality)
    for x, y in zip(_arrays(a), _arrays(b)): assert np.array_equal(x, y)
    assert np.array_equal(a['image'].affine, b['image'].affine)

def test_different_seeds_differ():
    a, b = make_phantom('abdomen', 1, SMALL), make_phantom('abdomen', 2, SMALL)
    assert not np.array_equal(_arrays(a)[1], _arrays(b)[1])
    assert a['phantom']['spacing'] != b['phantom']['spacing'] or a['phantom']['label_values'] != b['phantom']['label_values']

@pytest.mark.parametrize('preset', ['abdomen', 'heart'])
def test_every_label_present_in_full_fov(preset):
    n = len(PHANTOM_PRESETS[preset].labels)
    for seed in range(5):
        lab = _arrays(make_phantom(preset, seed, SMALL))[1]
        assert np.unique(lab).tolist() == list(range(n + 1)), (preset, seed)

def test_ras_orientation_and_left_right():
    for seed in range(4):
        a, h = make_phantom('abdomen', seed, SMALL), make_phantom('heart', seed, SMALL)
        assert nib.aff2axcodes(a['image'].affine) == ('R', 'A', 'S')  # +x = patient Right
        for L, R in [('left_kidney', 'right_kidney'), ('left_adrenal', 'right_adrenal'), ('spleen', 'liver')]:
            assert _centroid(a, L)[0] < _centroid(a, R)[0], (seed, L)
        assert _centroid(a, 'right_kidney')[2] < _centroid(a, 'left_kidney')[2] + 15  # right kidney not higher than left
        assert _centroid(a, 'aorta')[1] < _centroid(a, 'pancreas')[1]  # aorta posterior to pancreas
        for L, R in [('left_ventricle', 'right_ventricle'), ('left_atrium', 'right_atrium')]:
            assert _centroid(h, L)[0] < _centroid(h, R)[0], (seed, L)

def test_pairs_share_appearance():
    s = make_phantom('abdomen', 3, SMALL)
    v = s['phantom']['label_values']
    assert v['left_kidney'] == v['right_kidney'] and v['left_adrenal'] == v['right_adrenal']
    h = make_phantom('heart', 3, SMALL)['phantom']['label_values']
    assert h['left_ventricle'] == h['right_ventricle'] == h['left_atrium'] == h['right_atrium']

def test_intensity_in_configured_range():
    from scipy import ndimage
    for preset in ('abdomen', 'heart'):
        pre = PHANTOM_PRESETS[preset]
        for seed in range(3):
            s = make_phantom(preset, seed, (64, 64, 48)); img, lab = _arrays(s)
            for k, n in enumerate(pre.labels, 1):
                lo, hi = pre.hu[pre.label_tissue[n]][s['phantom']['phase']]
                core = ndimage.binary_erosion(lab == k)
                if core.sum() < 20 or n in ('stomach', 'esophagus', 'liver', 'right_kidney', 'left_kidney'): continue
                med = float(np.median(img[core]))
                assert lo - 30 <= med <= hi + 30, (preset, seed, n, med, (lo, hi))

def test_lesions_and_fov_random():
    s = make_phantom('abdomen', 4, SMALL, lesions=True)
    assert (_arrays(s)[1] == 14).sum() > 0
    labs = [set(np.unique(_arrays(make_phantom('abdomen', k, SMALL, fov='random'))[1])) for k in range(6)]
    assert any(len(l) < 14 for l in labs)  # random FOV truncates some structures in some subjects

def test_bad_inputs():
    with pytest.raises(Ssl3dError, match="preset='lung'"): make_phantom('lung')
    with pytest.raises(Ssl3dError, match='shape='): make_phantom(shape=(8, 8, 8))
    with pytest.raises(Ssl3dError, match='n_test=-1'): write_phantom_dataset('/tmp/never', n_test=-1)

def test_explicit_spacing():
    s = make_phantom('abdomen', 0, (40, 40, 30), spacing=(8.0, 8.0, 9.0))
    assert np.allclose(np.diag(s['image'].affine)[:3], (8, 8, 9))

def test_writer_layout(tmp_path):
    p = write_phantom_dataset(tmp_path / 'ds', 'abdomen', n=2, n_test=1, n_unlabelled=2, seed=1, shape=(32, 32, 24))
    meta = json.loads(p.read_text())
    assert meta['modality'] == {'0': 'CT'} and meta['labels'] == phantom_labels('abdomen')
    assert (meta['numTraining'], meta['numTest'], len(meta['unlabelled'])) == (2, 1, 2)
    for e in meta['training']:
        assert (tmp_path / 'ds' / e['image']).exists() and (tmp_path / 'ds' / e['label']).exists()
    for f in meta['test']: assert (tmp_path / 'ds' / f).exists() and (tmp_path / 'ds' / f.replace('imagesTs', 'labelsTs')).exists()
    for f in meta['unlabelled']: assert (tmp_path / 'ds' / f).exists()
    img = nib.load(tmp_path / 'ds' / meta['training'][0]['image'])
    assert img.get_data_dtype() == np.int16 and nib.aff2axcodes(img.affine) == ('R', 'A', 'S')

def test_cli(tmp_path, capsys):
    from ssl3d.cli import main
    rc = main(['phantoms', str(tmp_path / 'h'), '--preset', 'heart', '--n', '1', '--n-test', '1', '--n-unlabelled', '1',
               '--shape', '24', '24', '16', '--seed', '2'])
    out = capsys.readouterr().out
    assert rc == 0 and 'dataset.json' in out and 'pulmonary_artery' in out
    assert json.loads((tmp_path / 'h' / 'dataset.json').read_text())['numTest'] == 1
    assert main(['phantoms', str(tmp_path / 'x'), '--n', '0', '--n-test', '0']) == 2  # Ssl3dError → exit code 2

def test_round_trip_through_data_layer(tmp_path):
    data = pytest.importorskip('ssl3d.data')
    root = tmp_path / 'ds'
    write_phantom_dataset(root, 'abdomen', n=5, n_test=2, n_unlabelled=2, seed=0, shape=(32, 32, 24))
    tr = data.load_dataset(root, split='training'); te = data.load_dataset(root, split='test')
    un = data.load_dataset(root, split='unlabelled')
    assert (len(tr), len(te), len(un)) == (5, 2, 2)
    assert all('label' in s for s in tr + te) and not any('label' in s for s in un)
    ref = make_phantom('abdomen', 0, (32, 32, 24))
    s0 = next(s for s in tr if s['id'] == 'abdomen_0000')
    assert np.array_equal(s0['label'].numpy()[0], ref['label'].numpy()[0])
    assert np.allclose(s0['image'].numpy()[0], np.round(ref['image'].numpy()[0]), atol=0.5)
    splits = data.make_splits([s['id'] for s in tr], seed=0, fractions=(0.6, 0.2, 0.2))
    assert len(splits['train']) == 3 and len(data.label_subset(splits['train'], 0.34, 0)) == 1
    fg = np.mean([(s['label'].numpy() > 0).mean() for s in tr])
    assert 0.02 < fg < 0.5  # label fraction of the volume
    patches = pytest.importorskip('ssl3d.patches')
    batch = next(iter(patches.patch_loader(tr, (16, 16, 16), batch_size=2, samples_per_volume=2, seed=0)))
    assert tuple(batch['image'].shape) == (2, 1, 16, 16, 16) and tuple(batch['label'].shape) == (2, 1, 16, 16, 16)
    assert batch['label'].max() <= 13
