"Bad inputs and file round trips for ssl3d.models (behaviour is tested in nbs/40_models.ipynb)."
import pytest, torch
from ssl3d.core import Ssl3dError
from ssl3d.models import (ResNetEncoder, build_backbone, encoder_to_monai, monai_resnet_kwargs, LightDecoder,
                          SegmentationNet, cosine_momentum, pad_to_multiple)


def test_export_survives_torch_save(tmp_path):
    from monai.networks.nets import resnet18
    enc = ResNetEncoder(18, in_channels=1, base_width=8).eval()
    torch.save(encoder_to_monai(enc), tmp_path / 'enc.pt')
    m = resnet18(**monai_resnet_kwargs(enc)).eval()
    m.load_state_dict(torch.load(tmp_path / 'enc.pt', weights_only=True), strict=True)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        y = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.act(m.bn1(m.conv1(x))))))))
        torch.testing.assert_close(enc(x)[-1], y)


@pytest.mark.parametrize('kw, msg', [
    (dict(stem_stride=0), 'stem_stride=0'),
    (dict(strides=(1, 2, (2, 2), 2)), 'strides[2]=(2, 2)'),
    (dict(base_width=0), 'base_width=0'),
    (dict(depth=152), 'depth=152'),
])
def test_encoder_bad_args(kw, msg):
    with pytest.raises(Ssl3dError, match=msg.replace('(', r'\(').replace(')', r'\)').replace('[', r'\[').replace(']', r'\]')):
        ResNetEncoder(**kw)


def test_other_bad_args():
    with pytest.raises(Ssl3dError, match="layout='nope'"): build_backbone(preset='tiny', layout='nope')
    with pytest.raises(Ssl3dError, match='5 encoder_channels'): LightDecoder([8, 8, 16], (4, 4, 4, 4, 4))
    enc, dec = build_backbone(preset='tiny')
    with pytest.raises(Ssl3dError, match='n_classes=1'): SegmentationNet(enc, dec, 1)
    with pytest.raises(Ssl3dError, match='total=0'): cosine_momentum(0, 0)
    with pytest.raises(Ssl3dError, match='got shape'): enc(torch.zeros(1, 32, 32, 32))


def test_pad_then_segment_then_crop():
    enc, dec = build_backbone(preset='tiny')
    net = SegmentationNet(enc, dec, 2).eval()
    x = torch.randn(1, 1, 40, 32, 20)
    with torch.no_grad(): y = net(pad_to_multiple(x, enc.total_stride))[..., :40, :32, :20]
    assert y.shape == (1, 2, 40, 32, 20)
