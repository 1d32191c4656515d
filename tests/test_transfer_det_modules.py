"""ViTDet pieces: mmpretrain's LN2d built from an mmdet scope, NoiseMIMSimpleFPN
in mmdet's registry, and the windowed
NoiseMIM ViT (windows, padding, equivalence with global attention, position
embeddings resized from a pre-training checkpoint with zero missing keys)."""
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_ARCH, tiny_backbone
from mmcv.cnn import build_norm_layer
from mmdet.registry import MODELS as DET_MODELS
from mmengine.registry import DefaultScope
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS

from noisemim.models.backbones.vitdet import (window_partition,
                                              window_unpartition)


@pytest.fixture
def mmdet_scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


def tiny_vitdet(**overrides):
    """A tiny NoiseMIMViTDet (4 blocks, 64-d, 8 px patches), in eval mode."""
    overrides = dict(dict(mask_unit=None), **overrides)
    cfg = tiny_backbone(type='NoiseMIMViTDet', **overrides)
    model = MODELS.build(cfg)
    model.init_weights()
    model.eval()
    return model


def test_ln2d_builds_in_mmdet_and_normalises_channels(mmdet_scope):
    """The detection configs' norm: mmpretrain's LayerNorm2d, named with its
    scope, as mmcv's ``build_norm_layer`` finds it from mmdet's scope."""
    from mmpretrain.models.utils.norm import LayerNorm2d
    name, norm = build_norm_layer(dict(type='mmpretrain.LN2d', eps=1e-6), 8)
    assert type(norm) is LayerNorm2d and name == 'ln'
    with torch.no_grad():
        norm.weight.uniform_()
        norm.bias.uniform_()
    x = torch.randn(2, 8, 5, 3)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (8, ), norm.weight,
                            norm.bias, 1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)


def test_simple_fpn_levels(mmdet_scope):
    neck = DET_MODELS.build(
        dict(type='NoiseMIMSimpleFPN', backbone_channel=64,
             in_channels=[16, 32, 64, 64], out_channels=32, num_outs=5,
             norm_cfg=dict(type='mmpretrain.LN2d', eps=1e-6)))
    x = torch.randn(2, 64, 6, 6)
    outs = neck((x, ))  # a backbone's output tuple
    assert [o.shape[-1] for o in outs] == [24, 12, 6, 3, 2]
    assert all(o.shape[:2] == (2, 32) for o in outs)
    torch.testing.assert_close(neck(x)[2], outs[2])
    norms = [m for m in neck.modules() if type(m).__name__ == 'LayerNorm2d']
    assert len(norms) == 1 + 8  # fpn1 + each lateral and output conv
    with pytest.raises(ValueError, match='one feature map'):
        neck((x, x))
    with pytest.raises(ValueError, match=r'\(B, 64, H, W\)'):
        neck(torch.randn(2, 32, 6, 6))
    with pytest.raises(ValueError, match=r'in_channels must be \[16, 32, 64'):
        DET_MODELS.build(dict(type='NoiseMIMSimpleFPN', backbone_channel=64,
                              in_channels=[64, 64, 64, 64], out_channels=8,
                              num_outs=5))


def test_window_partition_pads_and_round_trips():
    x = torch.randn(2, 7, 9, 5)
    windows, padded = window_partition(x, 4)
    assert padded == (8, 12) and windows.shape == (2 * 2 * 3, 16, 5)
    torch.testing.assert_close(windows[0].view(4, 4, 5), x[0, :4, :4])
    # the last window of the first image: rows 4..7, columns 8..11 (padded)
    last = windows[5].view(4, 4, 5)
    torch.testing.assert_close(last[:3, :1], x[0, 4:7, 8:9])
    assert last[3].abs().sum() == 0 and last[:, 1:].abs().sum() == 0
    torch.testing.assert_close(window_unpartition(windows, 4, padded, (7, 9)),
                               x)


def test_one_window_over_the_grid_equals_global_attention():
    windowed = tiny_vitdet(window_size=4, global_attn_indexes=())
    plain = tiny_vitdet(window_size=0)
    plain.load_state_dict(windowed.state_dict())
    reference = MODELS.build(  # mmpretrain's own ViT
        dict(type='VisionTransformer', arch=dict(TINY_ARCH), img_size=32,
             patch_size=8, out_type='featmap', with_cls_token=False))
    reference.eval()
    reference.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = windowed(x)[0]
        assert out.shape == (2, 64, 4, 4)
        torch.testing.assert_close(out, plain(x)[0])
        torch.testing.assert_close(out, reference(x)[0])


def test_windows_confine_attention_and_global_blocks_mix():
    # 40 px, 8 px patches: a 5x5 grid in windows of 2 (padded to 6x6)
    windowed = tiny_vitdet(img_size=40, window_size=2, global_attn_indexes=())
    mixed = tiny_vitdet(img_size=40, window_size=2, global_attn_indexes=(3, ))
    mixed.load_state_dict(windowed.state_dict())
    x = torch.randn(1, 3, 40, 40)
    y = x.clone()
    y[..., 32:, 32:] += 1.  # the bottom-right patch: a padded window
    with torch.no_grad():
        change = (windowed(y)[0] - windowed(x)[0]).abs().sum(1)[0]
        assert change.shape == (5, 5)
        assert change[4, 4] > 0
        assert torch.all(change[:4] == 0) and torch.all(change[:, :4] == 0)
        change = (mixed(y)[0] - mixed(x)[0]).abs().sum(1)[0]
        assert torch.all(change > 0)


def test_pos_embed_resized_from_a_pretraining_checkpoint(
        tiny_pretrain_checkpoint):
    """The tiny checkpoint is 64 px (8x8 patches + class token); at 96 px the
    grid is 12x12 without a class token."""
    ckpt = torch.load(tiny_pretrain_checkpoint)['state_dict']
    backbone = MODELS.build(
        tiny_backbone(
            type='NoiseMIMViTDet',
            arch=dict(embed_dims=64, num_layers=4, num_heads=4,
                      feedforward_channels=256),
            img_size=96, window_size=5, global_attn_indexes=(1, 3),
            init_cfg=dict(type='StrictPretrained',
                          checkpoint=tiny_pretrain_checkpoint,
                          unused_keys=['cls_token'])))
    backbone.init_weights()
    state = backbone.state_dict()
    missing = [k for k in state if f'backbone.{k}' not in ckpt]
    assert missing == []
    expected = resize_pos_embed(ckpt['backbone.pos_embed'][:, 1:], (8, 8),
                                (12, 12), 'bicubic', 0)
    torch.testing.assert_close(state['pos_embed'], expected)
    for key in state:
        if key != 'pos_embed':
            torch.testing.assert_close(state[key], ckpt[f'backbone.{key}'])
    # no pre-training-only parameter (it would go unused under DDP)
    assert backbone.mask_token is None and 'mask_token' not in state
    assert backbone.pretrained_report.pretrain_only == ['mask_token']
    with torch.no_grad():
        assert backbone(torch.randn(1, 3, 96, 96))[0].shape == (1, 64, 12, 12)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match='window_size must be an int'):
        tiny_vitdet(window_size=-1)
    with pytest.raises(ValueError, match=r'global_attn_indexes .*\[0, 3\]'):
        tiny_vitdet(global_attn_indexes=(4, ))
    with pytest.raises(ValueError, match='with_cls_token=False'):
        tiny_vitdet(window_size=2, with_cls_token=True)
    with pytest.raises(ValueError, match='pretrain must be False'):
        tiny_vitdet(pretrain=True)
    model = tiny_vitdet(window_size=2)
    with pytest.raises(ValueError, match='downstream backbone'):
        model.sample_corruption(torch.randn(1, 3, 32, 32))
