"Bad inputs (one test per case, message checked), MSD round trip, split files, loader workers and the `ssl3d data` CLI."
import json
import nibabel as nib
import numpy as np
import pytest
import torch
from ssl3d.core import DataError, Ssl3dError
from ssl3d.data import (load_dataset, discover_dataset, validate_subjects, make_subject, make_splits, label_subset,
                        save_splits, load_splits, select_subjects, preprocessing)
from ssl3d.patches import patch_loader, to_device

SPACING = (1.5, 1.5, 3.0)

def nii(path, arr, spacing=SPACING, origin=(0, 0, 0), dtype=np.float32):
    "Write (X,Y,Z) or (C,X,Y,Z) `arr` as NIfTI (channels last on disk)."
    arr = np.asarray(arr, dtype)
    if arr.ndim == 4: arr = np.moveaxis(arr, 0, -1)
    aff = np.diag([*spacing, 1.]); aff[:3, 3] = origin
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, aff), str(path))
    return path

def case(shape=(16, 14, 10), seed=0, channels=1):
    rng = np.random.default_rng(seed)
    img = rng.normal(0, 10, (channels, *shape)) - 1000
    img[:, 3:-3, 3:-3, :] = 40 + rng.normal(0, 10, (channels, shape[0] - 6, shape[1] - 6, shape[2]))
    lab = np.zeros(shape, np.uint8); lab[5:9, 5:8, 3:6] = 1; lab[9:11, 5:8, 3:6] = 2
    return img, lab

def msd(root, n=3, channels=1, shape=(16, 14, 10), labels=None, extra=None):
    "A tiny MSD dataset; `extra` entries are appended to `training` verbatim."
    meta = dict(name='T', modality={str(c): f'M{c}' for c in range(channels)},
                labels=labels or {'0': 'background', '1': 'a', '2': 'b'}, training=[], test=[], unlabelled=[])
    for i in range(n):
        img, lab = case(shape, i, channels)
        nii(root/f'imagesTr/c{i}.nii.gz', img); nii(root/f'labelsTr/c{i}.nii.gz', lab, dtype=np.uint8)
        meta['training'].append(dict(image=f'./imagesTr/c{i}.nii.gz', label=f'./labelsTr/c{i}.nii.gz'))
    nii(root/'imagesTs/t0.nii.gz', case(shape, 9, channels)[0]); meta['test'].append('./imagesTs/t0.nii.gz')
    nii(root/'imagesU/u0.nii.gz', case(shape, 8, channels)[0]); meta['unlabelled'].append('./imagesU/u0.nii.gz')
    meta['training'] += extra or []
    (root/'dataset.json').write_text(json.dumps(meta))
    return root

def add_case(root, name, img, lab, lab_kw=None):
    "Write one extra training case and register it in dataset.json."
    nii(root/f'imagesTr/{name}.nii.gz', img); nii(root/f'labelsTr/{name}.nii.gz', lab, **(lab_kw or {}))
    meta = json.loads((root/'dataset.json').read_text())
    meta['training'].append(dict(image=f'./imagesTr/{name}.nii.gz', label=f'./labelsTr/{name}.nii.gz'))
    (root/'dataset.json').write_text(json.dumps(meta))

# ---------------------------------------------------------------- bad input: one test per case

def test_missing_file(tmp_path):
    root = msd(tmp_path, extra=[dict(image='./imagesTr/gone.nii.gz', label='./labelsTr/c0.nii.gz')])
    with pytest.raises(DataError, match=r'imagesTr/gone\.nii\.gz: image file not found'): load_dataset(root)

def test_missing_label_file(tmp_path):
    root = msd(tmp_path, extra=[dict(image='./imagesTs/t0.nii.gz', label='./labelsTr/gone.nii.gz')])
    with pytest.raises(DataError, match=r'labelsTr/gone\.nii\.gz: label file not found'): load_dataset(root)

def test_corrupt_image(tmp_path):
    root = msd(tmp_path)
    (root/'imagesTr/c1.nii.gz').write_bytes(b'\x1f\x8b not really gzip')
    with pytest.raises(DataError, match=r'imagesTr/c1\.nii\.gz: unreadable or corrupt image'): load_dataset(root)

def test_shape_mismatch(tmp_path):
    root = msd(tmp_path); img, lab = case()
    add_case(root, 'bad', img, lab[:, :, :8], dict(dtype=np.uint8))
    with pytest.raises(DataError, match=r'labelsTr/bad\.nii\.gz: label shape \(16, 14, 8\) does not match image shape \(16, 14, 10\)'):
        load_dataset(root)

def test_affine_mismatch(tmp_path):
    root = msd(tmp_path); img, lab = case()
    add_case(root, 'bad', img, lab, dict(dtype=np.uint8, origin=(5, 0, 0)))
    with pytest.raises(DataError, match=r'labelsTr/bad\.nii\.gz: label affine does not match the image affine.*origin'):
        load_dataset(root)

def test_non_integer_labels(tmp_path):
    root = msd(tmp_path); img, lab = case(); lab = lab.astype(np.float32); lab[0, 0, 0] = 0.5
    add_case(root, 'bad', img, lab)
    with pytest.raises(DataError, match=r'labelsTr/bad\.nii\.gz: non-integer label values \(e\.g\. 0\.5\)'): load_dataset(root)

def test_unexpected_label_values(tmp_path):
    root = msd(tmp_path); img, lab = case(); lab[0, 0, 0] = 7
    add_case(root, 'bad', img, lab, dict(dtype=np.uint8))
    with pytest.raises(DataError, match=r'labelsTr/bad\.nii\.gz: unexpected label values \[7\]; the dataset declares \[0, 1, 2\]'):
        load_dataset(root)

@pytest.mark.parametrize('value', [np.nan, np.inf])
def test_nan_inf_voxels(tmp_path, value):
    root = msd(tmp_path); img, lab = case(); img[0, 1, 2, 3] = value; img[0, 2, 2, 3] = value
    add_case(root, 'bad', img, lab, dict(dtype=np.uint8))
    with pytest.raises(DataError, match=r'imagesTr/bad\.nii\.gz: 2 NaN/Inf voxel\(s\)'): load_dataset(root)

def test_image_smaller_than_patch(tmp_path):
    root = msd(tmp_path)
    with pytest.raises(DataError, match=r'imagesTr/c0\.nii\.gz: image shape \(16, 14, 10\) is smaller than the patch \(16, 16, 16\)'):
        load_dataset(root, patch_size=(16, 16, 16), pad=False)
    subs = load_dataset(root, patch_size=(16, 16, 16))  # default: accepted, the loader pads
    b = next(iter(patch_loader(subs, (16, 16, 16), 2, 1, transform=preprocessing('ct', crop_body=False))))
    assert b['image'].shape == (2, 1, 16, 16, 16) and float(b['image'].min()) >= 0
    with pytest.raises(DataError, match='smaller than the patch'):
        patch_loader(subs, (16, 16, 16), 2, 1, transform=preprocessing('ct', crop_body=False), pad=False)

def test_entry_outside_root(tmp_path):
    nii(tmp_path/'elsewhere.nii.gz', case()[0])
    root = msd(tmp_path/'ds', extra=[dict(image='../elsewhere.nii.gz', label='./labelsTr/c0.nii.gz')])
    with pytest.raises(DataError, match=r"dataset\.json: training\[3\]: path '\.\./elsewhere\.nii\.gz' points outside the dataset root"):
        load_dataset(root)

def test_empty_dataset(tmp_path):
    (tmp_path/'dataset.json').write_text(json.dumps(dict(name='E', training=[], test=[])))
    with pytest.raises(DataError, match=r"empty dataset: no 'training' cases"): load_dataset(tmp_path)
    with pytest.raises(DataError, match='empty dataset'): validate_subjects([])

def test_channel_count_mismatch(tmp_path):
    root = msd(tmp_path, channels=2)
    img, lab = case(); add_case(root, 'bad', img, lab, dict(dtype=np.uint8))  # 1 channel in a 2-channel dataset
    with pytest.raises(DataError, match=r'imagesTr/bad\.nii\.gz: image has 1 channel\(s\); expected 2'): load_dataset(root)

def test_invalid_dataset_json(tmp_path):
    (tmp_path/'dataset.json').write_text('{"training": [')
    with pytest.raises(DataError, match=r'dataset\.json: invalid JSON'): load_dataset(tmp_path)

def test_orphan_label_in_folder(tmp_path):
    img, lab = case()
    nii(tmp_path/'images/a.nii.gz', img); nii(tmp_path/'labels/a.nii.gz', lab); nii(tmp_path/'labels/b.nii.gz', lab)
    with pytest.raises(DataError, match=r'labels/b\.nii\.gz: label file has no matching image'): load_dataset(tmp_path)

def test_csv_without_image_column(tmp_path):
    (tmp_path/'m.csv').write_text('path,label\na.nii.gz,\n')
    with pytest.raises(DataError, match=r"m\.csv: no 'image' column"): load_dataset(tmp_path/'m.csv')

# ---------------------------------------------------------------- acceptance: round trips

def test_msd_round_trip(tmp_path):
    root = msd(tmp_path/'ct')
    subs = load_dataset(root)
    assert [s['id'] for s in subs] == ['c0', 'c1', 'c2'] and all(s['labelled'] for s in subs)
    s = subs[0]
    assert s['image'].shape == (1, 16, 14, 10) and s['image'].spacing == SPACING
    assert torch.unique(s['label'].data).tolist() == [0, 1, 2]
    assert int((s['label'].data == 1).sum()) == 4 * 3 * 3
    allsubs = load_dataset(root, split='all')
    assert [(x['id'], x['labelled'], x['split']) for x in allsubs][-2:] == [('t0', False, 'test'), ('u0', False, 'unlabelled')]
    assert discover_dataset(root)['labels'] == {0: 'background', 1: 'a', 2: 'b'}
    # a 4D two-channel (T2 + ADC style) case
    mr = load_dataset(msd(tmp_path/'mr', n=2, channels=2))
    assert mr[0]['image'].shape == (2, 16, 14, 10) and mr[0]['image'].spacing == SPACING
    np.testing.assert_allclose(mr[0]['image'].data.numpy(), case(seed=0, channels=2)[0], rtol=1e-6)
    out = preprocessing('mr', crop_body=False)(mr[0])['image'].data
    assert [round(float(out[c].min()), 5) for c in (0, 1)] == [0, 0] and [round(float(out[c].max()), 5) for c in (0, 1)] == [1, 1]

def test_folder_and_csv_round_trip(tmp_path):
    img, lab = case()
    nii(tmp_path/'f/img/img0001.nii.gz', img); nii(tmp_path/'f/label/label0001.nii.gz', lab, dtype=np.uint8)
    nii(tmp_path/'f/img/img0002.nii.gz', img)
    subs = load_dataset(tmp_path/'f', split='all')
    assert [(s['id'], s['labelled']) for s in subs] == [('img0001', True), ('img0002', False)]
    (tmp_path/'m.csv').write_text('image,label,id\nf/img/img0001.nii.gz,f/label/label0001.nii.gz,A\nf/img/img0002.nii.gz,,B\n')
    subs = load_dataset(tmp_path/'m.csv', split='all')
    assert [(s['id'], s['labelled']) for s in subs] == [('A', True), ('B', False)]
    assert load_dataset(tmp_path/'m.csv', split='unlabelled')[0]['id'] == 'B'

def test_splits_reproducible_from_seed(tmp_path):
    ids = [f'case{i:02d}' for i in range(32)]
    a, b = make_splits(ids, seed=7), make_splits(list(reversed(ids)), seed=7)
    assert a == b and a != make_splits(ids, seed=8)
    assert (len(a['train']), len(a['val']), len(a['test'])) == (20, 6, 6)  # VP-A11: floor for val/test
    assert [len(a['subsets'][k]) for k in ('0.1', '0.25', '0.5', '1')] == [2, 5, 10, 20]
    assert set(a['subsets']['0.1']) < set(a['subsets']['0.25']) < set(a['subsets']['0.5']) < set(a['train'])
    assert label_subset(a['train'], 0.25, seed=3) == label_subset(list(reversed(a['train'])), 0.25, seed=3)
    assert label_subset(a['train'], 0.25, seed=3) != label_subset(a['train'], 0.25, seed=4)
    assert len(label_subset(a['train'][:3], 0.1, 0)) == 1  # at least one volume
    p = save_splits(a, tmp_path/'splits.json')
    assert load_splits(p) == a
    subs = [make_subject(nii(tmp_path/f'{i}.nii.gz', case()[0]), id=i) for i in ids[:4]]
    assert [s['id'] for s in select_subjects(subs, ['case02', 'case00'])] == ['case02', 'case00']
    (tmp_path/'bad.json').write_text(json.dumps(dict(train=['a'], val=[], test=[], subsets={'0.1': ['z']})))
    with pytest.raises(DataError, match=r"bad\.json: label subset 0\.1 holds ids not in train: \['z'\]"): load_splits(tmp_path/'bad.json')
    with pytest.raises(Ssl3dError, match='fraction=0'): label_subset(ids, 0, 0)

# ---------------------------------------------------------------- loader

def test_loader_same_batches_with_workers(tmp_path):
    subs = load_dataset(msd(tmp_path))
    kw = dict(samples_per_volume=4, label_probabilities={0: 0, 1: 1, 2: 3}, transform=preprocessing('ct'), seed=5)
    b0 = list(patch_loader(subs, (8, 8, 8), 3, num_workers=0, **kw))
    b2 = list(patch_loader(subs, (8, 8, 8), 3, num_workers=2, **kw))
    assert len(b0) == 4 and all(torch.equal(x['image'], y['image']) and torch.equal(x['label'], y['label']) for x, y in zip(b0, b2))
    assert all(bool((b['label'].flatten(1) > 0).any(1).all()) for b in b0)  # background weight 0 → every patch has foreground
    lab = torch.cat([b['label'] for b in b0])
    assert (lab == 2).sum() > 0 and (lab == 1).sum() > 0
    moved = to_device(b0[0], torch.device('cpu'))
    assert moved['image'].device.type == 'cpu' and moved['id'] == b0[0]['id']

def test_queue_backend(tmp_path):
    subs = load_dataset(msd(tmp_path))
    bs = list(patch_loader(subs, (8, 8, 8), 2, 2, label_probabilities={0: 0, 1: 1}, transform=preprocessing('ct'), backend='queue'))
    assert len(bs) == 3 and bs[0]['image'].shape == (2, 1, 8, 8, 8) and bs[0]['label'].dtype == torch.int64
    assert all(bool((b['label'] > 0).flatten(1).any(1).all()) for b in bs)
    with pytest.raises(Ssl3dError, match="backend='nope'"): patch_loader(subs, (8, 8, 8), 2, backend='nope')

# ---------------------------------------------------------------- CLI

def test_cli_data(tmp_path, capsys):
    from ssl3d.cli import main
    root = msd(tmp_path/'ds', n=2)
    assert main(['data', str(root), '--patch', '8', '8', '8']) == 0
    out = capsys.readouterr().out
    assert '4 subjects (2 labelled)' in out and 'label values [0, 1, 2]' in out and 'c0  1   16×14×10  1.5×1.5×3' in out
    assert main(['data', str(root), '--split', 'unlabelled']) == 0
    assert '1 subjects (0 labelled)' in capsys.readouterr().out
    assert main(['data', str(root), '--patch', '32', '32', '32', '--no-pad']) == 2
    assert 'smaller than the patch (32, 32, 32)' in capsys.readouterr().err
