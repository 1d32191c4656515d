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
