"Geometry and transforms travelling through DataLoader workers (pickling, collate), and bad-input messages."
import pickle
import numpy as np
import pytest
import torch
import torchio as tio
from ssl3d.core import Ssl3dError
from ssl3d.geometry import ViewGeometry, extract_view, from_tensor, sample_view, sample_view_pair, overlap_fraction
from ssl3d.transforms import models_genesis_corruption, pgl_intensity_augmentation


class _Views(torch.utils.data.Dataset):
    def __init__(self, vol): self.vol = vol
    def __len__(self): return 4
    def __getitem__(self, i):
        g1, g2 = sample_view_pair(self.vol.shape[1:], (8, 8, 4), np.random.default_rng(i))
        return dict(x1=extract_view(self.vol, g1), x2=extract_view(self.vol, g2), g1=g1.to_tensor(), g2=g2.to_tensor())


def test_geometry_pickles_and_batches_through_workers():
    vol = torch.rand(1, 24, 20, 12)
    dl = torch.utils.data.DataLoader(_Views(vol), batch_size=2, num_workers=2)
    batches = list(dl)
    assert batches[0]['x1'].shape == (2, 1, 8, 8, 4) and batches[0]['g1'].shape == (2, 21)
    gs = from_tensor(batches[1]['g1'])
    ref = sample_view_pair((24, 20, 12), (8, 8, 4), np.random.default_rng(2))[0]
    assert gs[0] == ref and pickle.loads(pickle.dumps(ref)) == ref
    assert all(overlap_fraction(a, b) >= 0.1 for a, b in zip(from_tensor(batches[0]['g1']), from_tensor(batches[0]['g2'])))


def test_transforms_pickle_and_replay_in_worker():
    t = pickle.loads(pickle.dumps(models_genesis_corruption(n_windows=50)))
    s = tio.Subject(image=tio.ScalarImage(tensor=torch.rand(1, 16, 16, 16)))
    torch.manual_seed(0)
    c = t(s)
    assert torch.equal(c.get_composed_history()(s).image.data, c.image.data)
    pickle.dumps(pgl_intensity_augmentation())


@pytest.mark.parametrize('kw, msg', [
    (dict(out_size=(8, 8, 4), rot=(1, (0, 2))), 'equal out_size'),
    (dict(rot=(1, (0, 3))), 'rot plane'),
    (dict(box_size=(-1, 2, 2)), 'box_size'),
    (dict(out_size=(0, 2, 2)), 'out_size'),
])
def test_bad_geometry_messages(kw, msg):
    with pytest.raises(Ssl3dError, match=msg): ViewGeometry((10, 10, 10), **kw)


def test_bad_sampler_inputs():
    rng = np.random.default_rng(0)
    with pytest.raises(Ssl3dError, match='region'): sample_view((10, 10, 10), (4, 4, 4), rng, region=(5, 5, 5, 1, 1, 1))
    with pytest.raises(Ssl3dError, match='scale_range'): sample_view((10, 10, 10), (4, 4, 4), rng, scale_range=(2, 1))
    with pytest.raises(Ssl3dError, match='fallback'): sample_view_pair((10, 10, 10), (4, 4, 4), rng, fallback='x')
