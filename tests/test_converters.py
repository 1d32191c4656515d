"""tools/model_converters: a published backbone file (prefixed or stripped)
loads strictly, and the timm export gives timm's ViT the same features."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmpretrain.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# the tiny demo pre-training architecture (configs/pretrain/...tiny_demo.py)
DEMO_ARCH = dict(embed_dims=64, num_layers=4, num_heads=4,
                 feedforward_channels=256)


def load_tool(name: str):
    """Import ``tools/model_converters/<name>.py`` as a module."""
    path = osp.join(ROOT, 'tools', 'model_converters', f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def demo_backbone(checkpoint: str, **kwargs):
    """The demo NoiseMIMViT loaded from ``checkpoint`` by StrictPretrained."""
    cfg = dict(
        type='NoiseMIMViT', arch=dict(DEMO_ARCH), img_size=64, patch_size=8,
        mask_unit=16,
        init_cfg=dict(type='StrictPretrained', checkpoint=checkpoint))
    cfg.update(kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    model.eval()  # (mmpretrain's ViT.train() returns None)
    return model


@pytest.fixture
def runner_checkpoint(tiny_pretrain_checkpoint, tmp_path):
    """The tiny pre-training checkpoint with what a Runner adds to it."""
    checkpoint = torch.load(tiny_pretrain_checkpoint)
    checkpoint.update(
        optimizer=dict(state={}, param_groups=[dict(lr=1e-3, params=[0])]),
        param_schedulers=[dict(last_epoch=3)],
        message_hub=dict(runtime_info=dict(epoch=1, iter=8)))
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize('strip', [False, True])
def test_published_backbone_loads_with_and_without_prefix(
        runner_checkpoint, tmp_path, strip):
    publish = load_tool('publish_checkpoint')
    out = str(tmp_path / 'backbone.pth')
    publish.main([runner_checkpoint, out] + ['--strip-prefix'] * strip)

    published = torch.load(out)
    assert set(published) == {'meta', 'state_dict'}
    keys = set(published['state_dict'])
    source = torch.load(runner_checkpoint)['state_dict']
    expected = {
        k if not strip else k[len('backbone.'):]
        for k in source if k.startswith('backbone.') and 'mask_token' not in k
    }
    assert keys == expected and len(keys) == 54

    model = demo_backbone(out)
    report = model.pretrained_report
    assert report.new == ['mask_token']  # pre-training only, not published
    assert len(report.loaded) == 54 and not report.unused
    for key, value in model.state_dict().items():
        if key != 'mask_token':
            assert torch.equal(value, source['backbone.' + key]), key


def test_publish_refuses_bad_input(runner_checkpoint, tmp_path, capsys):
    publish = load_tool('publish_checkpoint')
    with pytest.raises(SystemExit):
        publish.main([str(tmp_path / 'nope.pth'), str(tmp_path / 'o.pth')])
    assert 'nope.pth' in capsys.readouterr().err
    with pytest.raises(SystemExit, match='no ViT backbone under prefix'):
        publish.main([
            runner_checkpoint, str(tmp_path / 'o.pth'), '--prefix',
            'mim_head.'
        ])


def test_timm_export_gives_the_same_features(tiny_pretrain_checkpoint,
                                             tmp_path):
    from timm.models.vision_transformer import VisionTransformer
    to_timm = load_tool('noisemim_to_timm')
    out = str(tmp_path / 'timm.pth')
    to_timm.main([tiny_pretrain_checkpoint, out])

    timm_vit = VisionTransformer(
        img_size=64, patch_size=8, embed_dim=64, depth=4, num_heads=4,
        mlp_ratio=4, num_classes=0).eval()
    timm_vit.load_state_dict(torch.load(out), strict=True)
    ours = demo_backbone(tiny_pretrain_checkpoint, out_type='raw')
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = ours(x)[0]
        features = timm_vit.forward_features(x)
    assert features.shape == expected.shape == (2, 65, 64)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=0)


def test_timm_export_of_vit_b_loads_strictly_into_vit_base_patch16_224(
        vit_b_pretrain_checkpoint, tmp_path, capsys):
    to_timm = load_tool('noisemim_to_timm')
    out = str(tmp_path / 'timm_b.pth')
    to_timm.main([vit_b_pretrain_checkpoint, out,
                  '--check-model', 'vit_base_patch16_224'])
    printed = capsys.readouterr().out
    assert 'loads strictly into vit_base_patch16_224' in printed
    assert len(torch.load(out)) == 150  # every tensor of timm's ViT-B


def test_timm_export_refuses_unknown_keys(tmp_path):
    to_timm = load_tool('noisemim_to_timm')
    weights = {'patch_embed.projection.weight': torch.zeros(1),
               'ln1.weight': torch.zeros(1), 'ln2.weight': torch.zeros(1)}
    with pytest.raises(KeyError, match="'ln2.weight'"):
        to_timm.to_timm(weights)


def test_mae_export_follows_mae_finetune_loading(tiny_pretrain_checkpoint,
                                                 tmp_path, capsys):
    """``--mae``: the official MAE fine-tuning reads ``checkpoint['model']``
    into its timm-based ViT with ``strict=False`` and asserts that only the new
    head (and, with global pooling, ``fc_norm``) is missing; the same here
    with timm's ViT, for both of MAE's pooling choices."""
    from timm.models.vision_transformer import VisionTransformer
    to_timm = load_tool('noisemim_to_timm')
    out = str(tmp_path / 'mae.pth')
    to_timm.main([tiny_pretrain_checkpoint, out, '--mae'])
    assert "under 'model' (MAE's layout)" in capsys.readouterr().out
    checkpoint = torch.load(out)
    assert set(checkpoint) == {'model'}
    for global_pool, missing in (
        ('avg', {'head.weight', 'head.bias', 'fc_norm.weight', 'fc_norm.bias'}),
        ('token', {'head.weight', 'head.bias'}),
    ):
        vit = VisionTransformer(
            img_size=64, patch_size=8, embed_dim=64, depth=4, num_heads=4,
            mlp_ratio=4, num_classes=10, global_pool=global_pool)
        msg = vit.load_state_dict(checkpoint['model'], strict=False)
        assert set(msg.missing_keys) == missing, global_pool
