"""Transformers, MAE and Alice beyond the notebooks: a transformer checkpoint fine-tunes through the shared
`build_segmentation_model` path into the same network `--init none` builds from the same kwargs."""
import tempfile
import pytest
import torch
from ssl3d.core import Ssl3dError
from ssl3d.models import build_backbone, SegmentationNet
from ssl3d.train import save_checkpoint
from ssl3d.finetune import build_segmentation_model


@pytest.mark.parametrize('kw', [dict(arch='vit', preset='tiny'), dict(arch='vit', preset='tiny', hidden_size=24, num_heads=2, img_size=[32, 32, 16]),
                                dict(arch='swin', preset='tiny')])
def test_transformer_checkpoint_finetunes_like_random_init(kw):
    torch.manual_seed(0)
    enc, dec = build_backbone(**kw)
    with tempfile.TemporaryDirectory() as d:
        save_checkpoint(f'{d}/final.pt', transfer={'encoder': enc.state_dict(), 'decoder': None},
                        provenance={'method': 'test', 'backbone': dict(kw)})
        pre, info = build_segmentation_model(d, 3)
        rnd, rinfo = build_segmentation_model('none', 3, backbone=dict(kw))
    assert info['backbone'] == rinfo['backbone'] == kw
    sp, sr = pre.state_dict(), rnd.state_dict()
    assert list(sp) == list(sr) and all(sp[k].shape == sr[k].shape for k in sp)
    assert str(pre) == str(rnd)
    for k, v in enc.state_dict().items(): torch.testing.assert_close(sp[f'encoder.{k}'], v, rtol=0, atol=0)
    assert not torch.equal(sp['encoder.' + next(iter(enc.state_dict()))], sr['encoder.' + next(iter(enc.state_dict()))])
    size = (32, 32, 16) if kw['arch'] == 'vit' else (64, 64, 64)
    assert pre(torch.randn(1, 1, *size)).shape == (1, 3, *size)


def test_transformer_backbone_rejects_resnet_kwargs():
    with pytest.raises(Ssl3dError, match=r"\['base_width'\] are ResNet arguments"): build_backbone(arch='vit', base_width=8)
