"""Classification transfer: every config loads a NoiseMIM ViT-B checkpoint
with no missing key, and a missing key fails loudly. (Fine-tuning, the
linear probe and CUB run through tools/train.py and tools/test.py with the
real Accuracy in tests/test_smoke_recipes.py.)"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', 'classification', '*.py')))
DEMO_ARCH = dict(embed_dims=64, num_layers=4, num_heads=4,
                 feedforward_channels=256)


def build_from_config(cfg: Config):
    """Build and initialise a config's model as mmengine's Runner does."""
    model_cfg = cfg.model
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def test_there_is_a_config_per_task():
    names = {osp.basename(p).rsplit('_', 1)[-1][:-3] for p in CONFIGS}
    assert names == {'in1k', 'cub', 'nabirds', 'inat2017', 'inat2018',
                     'stanfordcars', 'fgvc-aircraft'}
    assert sum('linear' in p for p in CONFIGS) == 1


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_loads_vit_b_pretraining_with_no_missing_key(
        path, vit_b_pretrain_checkpoint):
    cfg = Config.fromfile(path)
    assert cfg.model.backbone.init_cfg.type == 'StrictPretrained'
    cfg.model.backbone.init_cfg.checkpoint = vit_b_pretrain_checkpoint
    model = build_from_config(cfg)

    backbone = model.backbone
    assert type(backbone) is VisionTransformer  # mmpretrain's stock class
    report = backbone.pretrained_report
    # every backbone key is loaded but ln2, the new norm after pooling; the
    # pre-training-only mask token is dropped
    assert report.new == ['ln2.weight', 'ln2.bias']
    assert sorted(report.loaded + report.new) == sorted(backbone.state_dict())
    assert not report.unused and report.pretrain_only == ['mask_token']
    assert {k.split('.')[0] for k in report.outside_prefix} == {
        'mim_head', 'denoise_head'}
    source = torch.load(vit_b_pretrain_checkpoint, mmap=True)['state_dict']
    for key in ('pos_embed', 'layers.11.ffn.layers.1.weight', 'ln1.bias'):
        assert torch.equal(backbone.state_dict()[key],
                           source['backbone.' + key]), key

    if 'linear' in path:  # all frozen
        trainable = [n for n, p in backbone.named_parameters()
                     if p.requires_grad]
        assert trainable == []
    else:
        assert backbone.layers[11].ffn.dropout_layer.drop_prob == \
            pytest.approx(0.1)
    if path.endswith('in1k.py') and 'linear' not in path:
        check_imagenet_finetuning_recipe(cfg, model)


def check_imagenet_finetuning_recipe(cfg: Config, model) -> None:
    """METHOD.md's fine-tuning recipe, as the built parts see it."""
    assert cfg.train_cfg.max_epochs == 100
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, cosine.begin, cosine.end) == (
        'LinearLR', 20, 20, 100)
    augments = {a.type: a.alpha for a in cfg.model.train_cfg.augments}
    assert augments == {'Mixup': 0.8, 'CutMix': 1.0}
    assert model.head.loss_module.label_smooth_val == 0.1
    steps = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert steps['RandomErasing'].erase_prob == 0.25
    assert steps['RandAugment'].magnitude_level == 9
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = {g['param_name']: g['lr'] for g in wrapper.param_groups
          if 'param_name' in g}  # (mmengine adds a base group)
    base = cfg.optim_wrapper.optimizer.lr
    assert lr['head.fc.weight'] == pytest.approx(base)
    assert lr['backbone.layers.11.attn.qkv.weight'] == pytest.approx(
        base * 0.65)
    assert lr['backbone.patch_embed.projection.weight'] == pytest.approx(
        base * 0.65**13)


def tiny_classifier(checkpoint: str,
                    backbone_type: str = 'VisionTransformer',
                    **init) -> dict:
    """A tiny fine-tuning classifier whose backbone loads ``checkpoint``."""
    backbone = dict(
        type=backbone_type, arch=dict(DEMO_ARCH), img_size=32, patch_size=8,
        out_type='avg_featmap',
        init_cfg=dict(type='StrictPretrained', checkpoint=checkpoint,
                      new_keys=('ln2.*', ), **init))
    if backbone_type == 'NoiseMIMViT':
        backbone.update(mask_unit=16, pretrain=False)
    return dict(
        type='ImageClassifier', backbone=backbone,
        head=dict(type='LinearClsHead', num_classes=3, in_channels=64))


def test_missing_backbone_key_fails_loudly(tiny_pretrain_checkpoint,
                                           tmp_path):
    checkpoint = torch.load(tiny_pretrain_checkpoint)
    del checkpoint['state_dict']['backbone.layers.2.attn.proj.weight']
    checkpoint['state_dict']['backbone.layers.9.attn.proj.weight'] = \
        torch.zeros(1)
    broken = str(tmp_path / 'broken.pth')
    torch.save(checkpoint, broken)
    model = MODELS.build(tiny_classifier(broken))
    with pytest.raises(RuntimeError) as error:
        model.init_weights()
    message = str(error.value)
    assert 'missing: layers.2.attn.proj.weight' in message
    assert 'unexpected in the checkpoint: layers.9.attn.proj.weight' in message

    # a wrong prefix loads nothing: also an error, not a log line
    model = MODELS.build(
        tiny_classifier(tiny_pretrain_checkpoint, prefix='encoder.'))
    with pytest.raises(
            RuntimeError,
            match="(?s)54 key.*patch_embed.*starts with 'encoder.'"):
        model.init_weights()
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        MODELS.build(tiny_classifier(str(tmp_path / 'nope.pth'))) \
            .init_weights()


def test_loading_resizes_position_embeddings(tiny_pretrain_checkpoint):
    model = MODELS.build(tiny_classifier(tiny_pretrain_checkpoint))
    model.init_weights()
    source = torch.load(tiny_pretrain_checkpoint)['state_dict']
    pos_embed = source['backbone.pos_embed']  # 64 px: 1 + 8 x 8 tokens
    assert model.backbone.pos_embed.shape == (1, 1 + 4 * 4, 64)
    torch.testing.assert_close(model.backbone.pos_embed[:, 0],
                               pos_embed[:, 0])
    assert sorted(model.backbone.pretrained_report.outside_prefix) == sorted(
        k for k in source if not k.startswith('backbone.'))


def test_stock_vit_and_downstream_noisemim_vit_load_the_same(
        tiny_pretrain_checkpoint):
    """mmpretrain's VisionTransformer and NoiseMIMViT(pretrain=False) have
    the same keys, load every pre-trained one (the sub-modules' own
    initialisation and the ViT's position-embedding draw do not overwrite
    them) and compute the same features."""
    source = torch.load(tiny_pretrain_checkpoint)['state_dict']
    models = {}
    for kind in ('VisionTransformer', 'NoiseMIMViT'):
        model = MODELS.build(tiny_classifier(tiny_pretrain_checkpoint, kind))
        model.init_weights()
        model.eval()  # (mmpretrain's ViT.train() returns None)
        models[kind] = model.backbone
        report = model.backbone.pretrained_report
        assert report.pretrain_only == ['mask_token'], kind
        assert len(report.loaded) == 54 and report.new == [
            'ln2.weight', 'ln2.bias'], kind
        state = model.backbone.state_dict()
        assert torch.equal(state['layers.3.ffn.layers.0.0.weight'],
                           source['backbone.layers.3.ffn.layers.0.0.weight'])
        assert torch.equal(state['pos_embed'][:, 0],  # the class token's
                           source['backbone.pos_embed'][:, 0]), kind
    stock, ours = models['VisionTransformer'], models['NoiseMIMViT']
    assert list(stock.state_dict()) == list(ours.state_dict())
    assert ours.mask_token is None and ours.time_embed is None
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(stock(x), ours(x))
    with pytest.raises(ValueError, match='built with pretrain=False'):
        ours.sample_corruption(x)


def test_strict_pretrained_must_be_the_last_init_cfg(tiny_pretrain_checkpoint):
    cfg = tiny_classifier(tiny_pretrain_checkpoint)
    cfg['backbone']['init_cfg'] = [
        cfg['backbone']['init_cfg'],
        dict(type='TruncNormal', layer='Linear', std=0.02)]
    with pytest.raises(ValueError, match='must be the last init_cfg entry'):
        MODELS.build(cfg).init_weights()
