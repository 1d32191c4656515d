"""DTM and NoiseMIM + DTM: the frozen teacher, the loss, the mask, a real run."""
import glob
import importlib.util
import json
import os.path as osp
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from torch import nn

from conftest import tiny_backbone, tiny_noisemim
from noisemim.models.block_masking import (BlockwiseMaskSampler,
                                           mask_only_corruption)
from noisemim.models.morphing import DynamicTokenMorphing, morph_average
from noisemim.models.teachers import save_random_teacher

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TEACHER_WIDTH = 32


@pytest.fixture(autouse=True)
def one_thread():
    """Run on one thread: tiny models gain nothing from more, and on a
    loaded 2-core machine the threads of parallel test workers thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_teacher(checkpoint: str, **vit) -> dict:
    """A 2-block, 48-d ViT teacher for 32 px images (16 tokens), 32-d."""
    cfg = dict(
        type='VisionTransformer',
        arch=dict(embed_dims=48, num_layers=2, num_heads=3,
                  feedforward_channels=96),
        img_size=32,
        patch_size=8,
        pre_norm=True,
        drop_rate=0.1,  # in eval mode it must do nothing
        norm_cfg=dict(type='LN', eps=1e-5),
        layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')))
    cfg.update(vit)
    return dict(type='ViTTeacher', checkpoint=checkpoint, vit=cfg,
                proj_channels=TEACHER_WIDTH)


@pytest.fixture(scope='module')
def teacher_file(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp('teacher') / 'tiny_teacher.pth')
    return save_random_teacher(tiny_teacher(path), path)


def tiny_dtm(teacher_file: str, **overrides) -> dict:
    cfg = dict(
        type='DTM',
        backbone=tiny_backbone(noise_ratio=0.),
        head=dict(type='MorphingHead', in_channels=64,
                  out_channels=TEACHER_WIDTH),
        teacher=tiny_teacher(teacher_file),
        morphing=dict(num_merge_range=(0, 16), iters_range=(1, 4)),
        mask=dict(num_masking_patches=6, min_num_patches=2),
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]),
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.02)])
    cfg.update(overrides)
    return cfg


def smooth_l1(d, beta=2.):
    d = d.abs()
    return torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)


def test_teacher_is_frozen_in_eval_mode_and_not_optimised(
        build_model, teacher_file):
    model = build_model(tiny_dtm(teacher_file))
    model.train()
    assert model.backbone.training
    assert not any(m.training for m in model.teacher.modules())
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model.teacher(x), model.teacher(x))  # no dropout
    assert not model.teacher(x).requires_grad

    # As a run builds it (the configs' paramwise_cfg: frozen parameters are
    # skipped by mmengine's optimizer constructor).
    cfg = Config.fromfile(osp.join(ROOT,
                                   'configs/pretrain/dtm_vit-tiny_demo.py'))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    in_optimizer = {id(p) for g in optim.param_groups for p in g['params']}
    teacher_params = list(model.teacher.parameters())
    assert teacher_params and all(not p.requires_grad for p in teacher_params)
    assert not in_optimizer & {id(p) for p in teacher_params}
    assert id(model.backbone.mask_token) in in_optimizer

    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    mask_token = model.backbone.mask_token.detach().clone()
    model.loss(x, [])['loss_dtm'].backward()
    assert all(p.grad is None for p in teacher_params)
    assert model.backbone.mask_token.grad.abs().sum() > 0
    optim.step()
    assert not torch.equal(model.backbone.mask_token, mask_token)
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_init_weights_keeps_the_teacher_file(teacher_file):
    model = MODELS.build(tiny_dtm(teacher_file))
    saved = torch.load(teacher_file, weights_only=True)['state_dict']
    model.init_weights()  # TruncNormal on every Linear, teacher included
    state = model.teacher.state_dict()
    assert set(state) == set(saved)
    for key, value in saved.items():
        assert torch.equal(state[key], value), key


def test_student_transfers_without_the_teacher(build_model, teacher_file,
                                               tmp_path):
    model = build_model(tiny_dtm(teacher_file))
    path = str(tmp_path / 'dtm.pth')
    torch.save(dict(meta=dict(iter=1), state_dict=model.state_dict()), path)
    downstream = build_model(tiny_backbone(
        noise_ratio=0.,
        init_cfg=dict(type='StrictPretrained', checkpoint=path,
                      prefix='backbone.')))
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(downstream.state_dict()[key], value), key
    report = downstream.pretrained_report
    assert not [k for k in report.loaded if 'teacher' in k]
    assert any(k.startswith('teacher.') for k in report.outside_prefix)


def test_missing_teacher_file_names_it_and_the_converter(tmp_path):
    missing = str(tmp_path / 'teachers' / 'clip.pth')
    with pytest.raises(FileNotFoundError) as err:
        MODELS.build(tiny_dtm(missing))
    assert missing in str(err.value)
    assert 'clip_to_teacher.py' in str(err.value)
    cfg = Config.fromfile(osp.join(ROOT,
                                   'configs/pretrain/'
                                   'dtm_vit-base-p16_8xb256-amp-coslr-300e_in1k.py'))
    with pytest.raises(FileNotFoundError, match='data/teachers/clip_vit-b16'):
        MODELS.build(cfg.model)


def test_wrong_teacher_file_is_explained(tmp_path):
    other = str(tmp_path / 'other.pth')
    save_random_teacher(dict(tiny_teacher(other), proj_channels=16), other)
    with pytest.raises(RuntimeError, match='does not fit ViTTeacher'):
        MODELS.build(tiny_teacher(other))  # expects a 32-d projection


def test_loss_is_smooth_l1_of_morphed_predictions_and_targets(
        build_model, teacher_file):
    model = build_model(tiny_dtm(teacher_file))
    x = torch.randn(3, 3, 32, 32)
    torch.manual_seed(0)
    loss = model.loss(x, [])['loss_dtm']

    torch.manual_seed(0)  # the same draws: mask, then morphing
    mask = model.mask_sampler(3, (4, 4))
    tokens = model.backbone(x, mask_only_corruption(mask, 64, 6)).tokens
    target = model.teacher(x)
    draws = model.morphing.draw()
    assert mask.sum(1).tolist() == [6, 6, 6]
    pred = model.head.predictor(tokens)
    ref = 0
    for source in model.morphing(target, draws):
        ref = ref + smooth_l1(morph_average(pred, source) -
                              morph_average(target, source)).mean()
    torch.testing.assert_close(loss, ref / 2)


def test_zero_merges_is_plain_token_distillation(build_model, teacher_file):
    model = build_model(tiny_dtm(
        teacher_file, morphing=dict(num_merge_range=(0, 0))))
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    loss = model.loss(x, [])['loss_dtm']
    torch.manual_seed(1)
    corruption = mask_only_corruption(model.mask_sampler(2, (4, 4)), 64, 6)
    pred = model.head.predictor(model.backbone(x, corruption).tokens)
    torch.testing.assert_close(
        loss, F.smooth_l1_loss(pred, model.teacher(x), beta=2.))


def test_block_masks_are_exact_blocky_and_reproducible():
    sampler = BlockwiseMaskSampler()  # 75 of 196 in blocks of >= 16
    masks = sampler(64, (14, 14), generator=torch.Generator().manual_seed(0))
    again = sampler(64, (14, 14), generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    assert masks.shape == (64, 196) and (masks.sum(1) == 75).all()
    assert len({tuple(m.tolist()) for m in masks}) == 64
    # Blocks: a masked patch has far more masked 4-neighbours than at random.
    grid = masks.view(64, 1, 14, 14).float()
    kernel = torch.tensor([[0., 1, 0], [1, 0, 1], [0, 1, 0]]).view(1, 1, 3, 3)
    neighbours = F.conv2d(grid, kernel, padding=1)
    assert (neighbours * grid).sum() / grid.sum() > 2.5  # random: ~1.5
    with pytest.raises(ValueError, match='num_masking_patches'):
        BlockwiseMaskSampler(num_masking_patches=16)(2, (4, 4))


def test_student_must_be_noise_free_and_head_must_fit(teacher_file):
    with pytest.raises(ValueError, match='noise_ratio=0'):
        MODELS.build(tiny_dtm(teacher_file, backbone=tiny_backbone()))
    with pytest.raises(ValueError, match='teacher width 32'):
        MODELS.build(tiny_dtm(teacher_file, head=dict(
            type='MorphingHead', in_channels=64, out_channels=48)))


def noisemim_dtm(teacher_file: str, **overrides) -> dict:
    cfg = tiny_noisemim(
        type='NoiseMIMDTM',
        mim_head=dict(type='MorphingHead', in_channels=64,
                      out_channels=TEACHER_WIDTH),
        teacher=tiny_teacher(teacher_file),
        morphing=dict(num_merge_range=(0, 16), iters_range=(1, 4)))
    cfg.update(overrides)
    return cfg


def test_noisemim_dtm_changes_only_the_mim_target(build_model, teacher_file):
    plain = build_model(tiny_noisemim())
    model = build_model(noisemim_dtm(teacher_file))
    for name in ('backbone', 'denoise_head'):
        getattr(model, name).load_state_dict(
            getattr(plain, name).state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(2)
    ref = plain.loss(x, [])
    torch.manual_seed(2)
    losses = model.loss(x, [])
    assert set(losses) == {'loss_mim', 'loss_denoise', 'loss_disruption'}
    for key in ('loss_denoise', 'loss_disruption'):
        torch.testing.assert_close(losses[key], ref[key])

    torch.manual_seed(2)  # the same corruption, then the same morphing
    corruption, out = model.corrupted_forward(x)
    target = model.teacher(x)
    pred = model.mim_head.predictor(out.tokens)
    mim = 0
    for source in model.morphing(target):
        per_token = smooth_l1(morph_average(pred, source) -
                              morph_average(target, source)).mean(-1)
        mim = mim + per_token[corruption.mask].mean()
    torch.testing.assert_close(losses['loss_mim'], mim / 2)


def test_noisemim_dtm_validates_its_options(teacher_file):
    with pytest.raises(ValueError, match='mim_loss_tokens'):
        MODELS.build(noisemim_dtm(teacher_file, mim_loss_tokens='visible'))
    bad_head = dict(type='MorphingHead', in_channels=64, out_channels=8)
    with pytest.raises(ValueError, match='mim_head.out_channels'):
        MODELS.build(noisemim_dtm(teacher_file, mim_head=bad_head))


def _converter():
    spec = importlib.util.spec_from_file_location(
        'clip_to_teacher',
        osp.join(ROOT, 'tools/model_converters/clip_to_teacher.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_openai_clip(width=64, layers=2, patch=8, grid=4, embed=32, seed=0):
    """Random weights with OpenAI CLIP's visual key names and shapes."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return 0.1 * torch.randn(*shape, generator=g)

    sd = {
        'visual.conv1.weight': r(width, 3, patch, patch),
        'visual.class_embedding': r(width),
        'visual.positional_embedding': r(grid * grid + 1, width),
        'visual.proj': r(width, embed),
        'logit_scale': torch.tensor(4.6),  # a text-side key: ignored
    }
    for name in ('ln_pre', 'ln_post'):
        sd[f'visual.{name}.weight'] = 1 + r(width)
        sd[f'visual.{name}.bias'] = r(width)
    for i in range(layers):
        p = f'visual.transformer.resblocks.{i}.'
        sd.update({
            p + 'ln_1.weight': 1 + r(width), p + 'ln_1.bias': r(width),
            p + 'ln_2.weight': 1 + r(width), p + 'ln_2.bias': r(width),
            p + 'attn.in_proj_weight': r(3 * width, width),
            p + 'attn.in_proj_bias': r(3 * width),
            p + 'attn.out_proj.weight': r(width, width),
            p + 'attn.out_proj.bias': r(width),
            p + 'mlp.c_fc.weight': r(4 * width, width),
            p + 'mlp.c_fc.bias': r(4 * width),
            p + 'mlp.c_proj.weight': r(width, 4 * width),
            p + 'mlp.c_proj.bias': r(width),
        })
    return sd


def test_clip_converter_matches_timms_clip_tower(tmp_path, monkeypatch):
    import timm.layers
    from timm.models.vision_transformer import (VisionTransformer,
                                                _convert_openai_clip)
    converter = _converter()
    clip = fake_openai_clip()
    src, dst = str(tmp_path / 'clip.pt'), str(tmp_path / 'teacher.pth')
    torch.save(clip, src)
    monkeypatch.setattr('sys.argv', ['clip_to_teacher.py', src, dst])
    converter.main()
    teacher_cfg = converter.tower_settings(
        torch.load(dst, weights_only=True)['state_dict'])
    teacher = MODELS.build(dict(type='ViTTeacher', checkpoint=dst,
                                vit=teacher_cfg[0],
                                proj_channels=teacher_cfg[1]))
    # timm's own OpenAI-CLIP conversion as the independent reference.
    ref = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=1,
        pre_norm=True, num_classes=32, global_pool='token',
        norm_layer=partial(nn.LayerNorm, eps=1e-5),
        act_layer=timm.layers.QuickGELU)
    ref.load_state_dict(_convert_openai_clip(clip, ref))
    ref.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = ref.head(ref.forward_features(x)[:, 1:])
    torch.testing.assert_close(teacher(x), expected, rtol=1e-4, atol=1e-5)


def test_timm_teacher_loads_a_local_state_dict(tmp_path):
    import timm
    kwargs = dict(img_size=32, patch_size=8, embed_dim=48, depth=2,
                  num_heads=3, num_classes=TEACHER_WIDTH)
    model = timm.create_model('vit_tiny_patch16_224', pretrained=False,
                              **kwargs).eval()
    path = str(tmp_path / 'timm_teacher.pth')
    torch.save(model.state_dict(), path)
    teacher = MODELS.build(dict(type='TimmTeacher', checkpoint=path,
                                model_name='vit_tiny_patch16_224',
                                model_kwargs=kwargs))
    assert teacher.out_channels == TEACHER_WIDTH
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.head(model.forward_features(x)[:, 1:])
    torch.testing.assert_close(teacher(x), expected)


def test_configs_follow_the_paper():
    cfg = Config.fromfile(osp.join(ROOT,
                                   'configs/pretrain/'
                                   'dtm_vit-base-p16_8xb256-amp-coslr-300e_in1k.py'))
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.model.morphing.num_merge_range == (0, 196)
    assert cfg.model.morphing.iters_range == (1, 14)
    assert cfg.model.morphing.num_draws == 2
    assert cfg.model.mask.num_masking_patches == 75
    assert cfg.model.head.beta == 2.
    assert cfg.model.teacher.checkpoint == 'data/teachers/clip_vit-b16.pth'
    combo = Config.fromfile(
        osp.join(ROOT, 'configs/pretrain/noisemim-dtm_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'))
    assert combo.model.type == 'NoiseMIMDTM'
    assert combo.model.mim_head.out_channels == 512
    assert combo.model.disruption.loss_weight == 0.1  # NoiseMIM's, unchanged


DTM_CONFIGS = [
    'dtm_vit-base-p16_8xb256-amp-coslr-300e_in1k.py',
    'noisemim-dtm_vit-base-p16_8xb512-amp-coslr-400e_in1k.py',
    'dtm_vit-tiny_demo.py', 'noisemim-dtm_vit-tiny_demo.py'
]


def first_patch_unmerged(morphing: DynamicTokenMorphing, tokens: int) -> bool:
    """Morph tokens whose first patch has a perfect partner (the second)."""
    x = torch.randn(2, tokens, 8, generator=torch.Generator().manual_seed(0))
    x[:, 1] = 2 * x[:, 0]
    alone = F.one_hot(torch.zeros(2, dtype=torch.long), tokens).float()
    draws = [d for seed in range(3)
             for d in morphing.draw(torch.Generator().manual_seed(seed))]
    sources = [s for s in morphing(x, draws) if s.shape[1] < tokens]
    assert sources, 'no draw merged anything'
    return all(torch.equal(s[:, 0], alone) for s in sources)


@pytest.mark.parametrize('config', DTM_CONFIGS)
def test_configs_never_merge_the_first_patch(config):
    # The official code's ToMe class_token=True on patch tokens.
    cfg = Config.fromfile(osp.join(ROOT, 'configs/pretrain', config))
    morphing = DynamicTokenMorphing(**cfg.model.get('morphing', {}))
    assert morphing.protect_first
    assert first_patch_unmerged(morphing, 64)


def test_the_module_defaults_never_merge_the_first_patch(
        build_model, teacher_file):
    dtm = build_model(tiny_dtm(teacher_file, morphing=None))
    combo = build_model(noisemim_dtm(teacher_file, morphing=None))
    for morphing in (DynamicTokenMorphing(), dtm.morphing, combo.morphing):
        assert morphing.protect_first and not morphing.per_rank_draws
        assert first_patch_unmerged(morphing, 196)
    plain = DynamicTokenMorphing(num_merge_range=(60, 60), iters_range=(1, 1),
                                 protect_first=False)
    assert not first_patch_unmerged(plain, 196)  # plain ToMe merges it


def test_demo_pretraining_loss_falls(tmp_path):
    """A short real run of the CPU demo config with a small random teacher."""
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/pretrain/dtm_vit-tiny_demo.py'))
    cfg.model.teacher.checkpoint = save_random_teacher(
        cfg.model.teacher.to_dict(), str(tmp_path / 'teacher.pth'))
    iters = 30
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_cfg.max_iters = iters
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=5),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=5, end=iters,
             T_max=iters - 5, eta_min=1e-4)
    ]
    cfg.default_hooks.logger.interval = 5
    cfg.default_hooks.checkpoint.interval = iters
    # A small batch of the quickest photographs to decode.
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.dataset.names = ['coins.png', 'moon.png',
                                          'rocket.jpg', 'brick.png']
    cfg.log_level = 'WARNING'
    Runner.from_cfg(cfg).train()
    path = glob.glob(osp.join(cfg.work_dir, '*', 'vis_data',
                              'scalars.json'))[0]
    with open(path) as f:
        records = [json.loads(line) for line in f if '"loss"' in line]
    assert 'loss_dtm' in records[0] and len(records) >= iters // 5
    first, last = records[0]['loss'], records[-1]['loss']
    assert last < 0.7 * first, (first, last)
    assert osp.exists(osp.join(cfg.work_dir, f'iter_{iters}.pth'))


def test_noisemim_dtm_demo_config_trains_the_student_only(tmp_path):
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/pretrain/noisemim-dtm_vit-tiny_demo.py'))
    cfg.model.teacher.checkpoint = save_random_teacher(
        cfg.model.teacher.to_dict(), str(tmp_path / 'teacher.pth'))
    model = MODELS.build(cfg.model)
    model.init_weights()
    losses = model.loss(torch.randn(2, 3, 64, 64), [])
    assert set(losses) == {'loss_mim', 'loss_denoise', 'loss_disruption'}
    sum(losses.values()).backward()
    assert model.mim_head.predictor.weight.grad.abs().sum() > 0
    assert model.backbone.mask_token.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.teacher.parameters())
