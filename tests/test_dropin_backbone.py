"""The NoiseMIM ViT as a drop-in backbone of another OpenMMLab project: a
config with ``custom_imports`` and ``type='mmpretrain.NoiseMIMViT'`` builds it
from mmdet's and from mmseg's registries, in a fresh interpreter that never
imports noisemim itself (the config does), and loads pre-trained weights."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

# The fragment of the README ("Drop-in backbone"), with the
# tiny demo ViT (4 blocks, 64-d, 8 px patches) in place of ViT-B.
FRAGMENT = '''
custom_imports = dict(imports=['noisemim'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        type='mmpretrain.NoiseMIMViT',
        pretrain=False,
        arch=dict(embed_dims=64, num_layers=4, num_heads=4,
                  feedforward_channels=256),
        img_size=64,
        patch_size=8,
        mask_unit=16,
        out_type='featmap',
        out_indices=(1, 3),
        drop_path_rate=0.1,
        init_cfg=dict(
            type='StrictPretrained', checkpoint={checkpoint!r},
            prefix='backbone.')))
'''

# Run by a fresh interpreter: load the config, build the backbone in each
# scope, and mmpretrain's stock ViT in its place (the README's form), run
# them, print what came out.
BUILD = '''
import importlib, itertools, json, sys
assert 'noisemim' not in sys.modules
from mmengine.config import Config
from mmengine.registry import DefaultScope
cfg = Config.fromfile(sys.argv[1])  # runs custom_imports
assert 'noisemim' in sys.modules
import torch
stock = dict(cfg.model.backbone, type='mmpretrain.VisionTransformer')
for key in ('pretrain', 'mask_unit'):
    stock.pop(key)
out = {}
kinds = (('', cfg.model.backbone), ('/stock', stock))
for scope, (kind, backbone_cfg) in itertools.product(('mmdet', 'mmseg'),
                                                     kinds):
    registry = importlib.import_module(scope + '.registry')
    with DefaultScope.overwrite_default_scope(scope):
        backbone = registry.MODELS.build(backbone_cfg)
    backbone.init_weights()
    with torch.no_grad():
        feats = backbone(torch.rand(2, 3, 64, 64))
    out[scope + kind] = dict(
        cls=type(backbone).__module__ + '.' + type(backbone).__name__,
        shapes=[list(f.shape) for f in feats],
        loaded=len(backbone.pretrained_report.loaded),
        keys=len(backbone.state_dict()))
print('RESULT ' + json.dumps(out))
'''


def test_builds_from_mmdet_and_mmseg_registries(tmp_path,
                                                tiny_pretrain_checkpoint):
    config = tmp_path / 'other_project_config.py'
    config.write_text(FRAGMENT.format(checkpoint=tiny_pretrain_checkpoint))
    run = subprocess.run([sys.executable, '-c', BUILD, str(config)],
                         cwd=str(tmp_path),
                         env=dict(os.environ, OMP_NUM_THREADS='1'),
                         capture_output=True,
                         text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.split('RESULT ', 1)[1])
    classes = {
        '': 'noisemim.models.backbones.noisemim_vit.NoiseMIMViT',
        '/stock':
        'mmpretrain.models.backbones.vision_transformer.VisionTransformer'
    }
    for scope in ('mmdet', 'mmseg'):
        for kind, cls in classes.items():
            built = result[scope + kind]
            assert built['cls'] == cls
            assert built['shapes'] == [[2, 64, 8, 8], [2, 64, 8, 8]]
            assert built['loaded'] == built['keys']  # every key pre-trained


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_without_the_scope_prefix_the_registry_says_so(scope):
    import importlib

    import noisemim  # noqa: F401
    from mmengine.registry import DefaultScope
    registry = importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope), pytest.raises(
            KeyError, match=f'NoiseMIMViT is not in the {scope}'):
        registry.MODELS.build(dict(type='NoiseMIMViT'))


# The tiny demo ViT in place of ViT-B (4 blocks, 64-d, 64 px, 8 px patches).
TINY = dict(embed_dims=64, num_layers=4, num_heads=4,
            feedforward_channels=256)


def load_file(name: str) -> dict:
    """A checkpoint file's state dict (``state_dict`` or ``model``, if any)."""
    import torch
    checkpoint = torch.load(name)
    for key in ('state_dict', 'model'):
        if key in checkpoint:
            return checkpoint[key]
    return checkpoint


def stock_config(tmp_path, base: str):
    """A user's config that is one of the consumer's own, from its ``.mim``
    (``Config.fromfile`` reads ``<package>::`` paths only as bases)."""
    from mmengine.config import Config
    path = tmp_path / 'stock.py'
    path.write_text(f'_base_ = {base!r}\n')
    return Config.fromfile(str(path))


def test_mmpretrain_stock_mae_finetune_config_loads_the_pretraining_file(
        tiny_pretrain_checkpoint, tmp_path):
    """mmpretrain's own MAE fine-tuning config (its ``VisionTransformer``,
    ``final_norm=False``, average pooling, mmengine's ``Pretrained`` with
    ``prefix='backbone.'``), shrunk to the tiny ViT, takes the pre-training
    checkpoint as it is: every backbone tensor but the new ``ln2``."""
    import torch
    from mmpretrain.registry import MODELS
    cfg = stock_config(
        tmp_path,
        'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py')
    backbone_cfg = cfg.model.backbone
    assert backbone_cfg.init_cfg.type == 'Pretrained'
    assert backbone_cfg.init_cfg.prefix == 'backbone.'
    backbone_cfg.update(arch=TINY, img_size=64, patch_size=8)
    backbone_cfg.init_cfg.checkpoint = tiny_pretrain_checkpoint
    backbone = MODELS.build(backbone_cfg)
    backbone.init_weights()
    ours = load_file(tiny_pretrain_checkpoint)
    state = backbone.state_dict()
    new = [k for k in state if f'backbone.{k}' not in ours]
    assert new == ['ln2.weight', 'ln2.bias']  # the stock head's own norm
    for key, value in state.items():
        if key not in new:
            assert torch.equal(value, ours[f'backbone.{key}']), key


def test_mmseg_stock_mae_config_loads_the_mae_file_after_mmseg_converter(
        tiny_pretrain_checkpoint, tmp_path, monkeypatch):
    """mmseg's own MAE config (its BEiT-style ``MAE`` backbone, which reads
    a converted official MAE checkpoint through ``model.pretrained``) takes
    ``noisemim_to_timm.py --mae`` after mmseg's own
    ``tools/model_converters/beit2mmseg.py`` (from mmseg's installed
    ``.mim``): every tensor of ours loads, only the backbone's zero
    relative position biases and layer scales (1.0 in that config) stay new,
    and its last block's features equal those of our ViT (no final norm)."""
    import runpy

    import mmseg
    import torch
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    from mmseg.registry import MODELS

    mae, converted = str(tmp_path / 'mae.pth'), str(tmp_path / 'mmseg.pth')
    tool = osp.join(ROOT, 'tools', 'model_converters', 'noisemim_to_timm.py')
    monkeypatch.setattr(sys, 'argv', [tool, tiny_pretrain_checkpoint, mae,
                                      '--mae'])
    runpy.run_path(tool, run_name='__main__')
    beit2mmseg = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools',
                          'model_converters', 'beit2mmseg.py')
    monkeypatch.setattr(sys, 'argv', [beit2mmseg, mae, converted])
    runpy.run_path(beit2mmseg, run_name='__main__')

    cfg = stock_config(
        tmp_path, 'mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py')
    assert cfg.model.backbone.type == 'MAE'
    backbone_cfg = dict(
        cfg.model.backbone, img_size=(64, 64), patch_size=8, embed_dims=64,
        num_layers=4, num_heads=4, mlp_ratio=4, out_indices=[3],
        drop_path_rate=0.0,
        pretrained=converted)  # what EncoderDecoder(pretrained=...) sets
    with DefaultScope.overwrite_default_scope('mmseg'):
        backbone = MODELS.build(backbone_cfg)
    backbone.init_weights()
    backbone.eval()

    theirs = torch.load(converted)
    state = backbone.state_dict()
    new = sorted({k.split('.')[-1] for k in state if k not in theirs})
    assert new == ['gamma_1', 'gamma_2', 'relative_position_bias_table',
                   'relative_position_index']
    loaded = [k for k in state if k in theirs]
    assert len(loaded) == 4 + 4 * 12  # tokens, patch embed; 12 per block
    for key in loaded:
        assert torch.equal(state[key], theirs[key]), key

    ours = PRETRAIN_MODELS.build(dict(
        type='VisionTransformer', arch=TINY, img_size=64, patch_size=8,
        out_indices=[3], out_type='featmap', final_norm=False,
        init_cfg=dict(type='StrictPretrained',
                      checkpoint=tiny_pretrain_checkpoint,
                      prefix='backbone.', unused_keys=['ln1.*'])))
    ours.init_weights()
    ours.eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[0], ours(x)[0], atol=1e-5,
                                   rtol=0)


# NoiseMIMViTDet and its pyramid in one's own mmdet config (the form of
# docs/transfer.md, "Which file for which consumer"), tiny.
VITDET_FRAGMENT = '''
custom_imports = dict(
    imports=['noisemim', 'noisemim.detection'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        type='mmpretrain.NoiseMIMViTDet',
        arch=dict(embed_dims=64, num_layers=4, num_heads=4,
                  feedforward_channels=256),
        img_size=96,  # the 64 px position embedding is resized on load
        patch_size=8,
        window_size=4,
        global_attn_indexes=(1, 3),
        init_cfg=dict(
            type='StrictPretrained', checkpoint={checkpoint!r},
            prefix='backbone.', unused_keys=['cls_token'])),
    neck=dict(
        type='NoiseMIMSimpleFPN', backbone_channel=64,
        in_channels=[16, 32, 64, 64], out_channels=32, num_outs=5,
        norm_cfg=dict(type='mmpretrain.LN2d', eps=1e-6)))
'''


def test_noisemim_vitdet_in_ones_own_mmdet_config(tiny_pretrain_checkpoint,
                                                  tmp_path):
    """Every backbone key loads from the pre-training checkpoint; the
    class token, which the windowed backbone has no place for, is the one
    declared unused key (no warning), and the pyramid runs on its map."""
    import torch
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    config = tmp_path / 'my_detector.py'
    config.write_text(
        VITDET_FRAGMENT.format(checkpoint=tiny_pretrain_checkpoint))
    cfg = Config.fromfile(str(config))
    with DefaultScope.overwrite_default_scope('mmdet'):
        backbone = MODELS.build(cfg.model.backbone)
        neck = MODELS.build(cfg.model.neck)
    backbone.init_weights()
    report = backbone.pretrained_report
    assert len(report.loaded) == len(backbone.state_dict())
    assert report.unused == ['cls_token'] and report.new == []
    with torch.no_grad():
        outs = neck(backbone(torch.rand(1, 3, 96, 96)))
    assert [tuple(o.shape[-2:]) for o in outs] == [(48, 48), (24, 24),
                                                   (12, 12), (6, 6), (3, 3)]
