"Bad inputs and dtype handling for ssl3d.ops (behaviour is tested in nbs/41_ops.ipynb)."
import pytest, torch
from ssl3d.core import Ssl3dError
from ssl3d.ops import roi_align3d, patchify3d, unpatchify3d, random_masking


def test_roi_align_bad_inputs():
    f = torch.zeros(2, 1, 4, 4, 4)
    with pytest.raises(Ssl3dError, match='feat must be'): roi_align3d(f[0], torch.zeros(2, 6), 2)
    with pytest.raises(Ssl3dError, match='out_size=0'): roi_align3d(f, torch.zeros(2, 6), 0)
    with pytest.raises(Ssl3dError, match='sampling_ratio=0'): roi_align3d(f, torch.zeros(2, 6), 2, sampling_ratio=0)


def test_roi_align_keeps_dtype_and_zeros_padding():
    f = torch.ones(1, 2, 4, 4, 4, dtype=torch.float64)
    box = torch.tensor([[-4., 0, 0, 4, 4, 4]])   # left half lies outside the map
    y = roi_align3d(f, box, (2, 2, 2), padding_mode='zeros')
    assert y.dtype == torch.float64
    torch.testing.assert_close(y[0, 0, 1], torch.ones(2, 2, dtype=torch.float64))
    assert y[0, 0, 0].abs().max() < 1   # bins outside the map are (partly) zero-padded
    torch.testing.assert_close(roi_align3d(f, box, (2, 2, 2))[0, 0, 0], torch.ones(2, 2, dtype=torch.float64))


def test_patch_bad_inputs():
    with pytest.raises(Ssl3dError, match='patch size'): patchify3d(torch.zeros(1, 1, 4, 4, 4), (2, 2))
    with pytest.raises(Ssl3dError, match='do not match size'): unpatchify3d(torch.zeros(1, 7, 8), 2, (4, 4, 4))
    with pytest.raises(Ssl3dError, match='ratio=-0.1'): random_masking(torch.zeros(1, 4, 2), -0.1)
