"""Every cell of the study grid builds from its config and trains a step."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
STUDY = osp.join(ROOT, 'configs', 'pretrain', 'study')
CELLS = sorted(
    osp.basename(p)[:-3] for p in glob.glob(osp.join(STUDY, '*.py')))
NAME = re.compile(r'^(maskonly_(encoder|decoder)|(substitutive|conjunctive)_'
                  r'(encoder_(pixel|feature_l\d+)|decoder_pixel)|'
                  r'conjunctive_encoder_feature_l2_(nodisruption|nodenoise|highnoise|hard|'
                  r'target_(feature|noise|pixel)))$')


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def expected_losses(cell: str) -> set:
    """The loss terms a cell must log, read from its name."""
    if cell == 'maskonly_decoder':
        return {'loss'}  # mmpretrain's MAE
    if cell.endswith(('_nodisruption', '_hard')):
        return {'loss_mim', 'loss_denoise'}  # no disruption loss term
    if cell.startswith('conjunctive_encoder'):
        return {'loss_mim', 'loss_denoise', 'loss_disruption'}
    if cell == 'conjunctive_decoder_pixel':
        return {'loss_mim', 'loss_denoise'}
    return {'loss_mim'}  # mask only (SimMIM-style) and substitutive cells


def test_the_grid_is_complete_and_named_by_its_cells():
    assert all(NAME.match(c) for c in CELLS), CELLS
    for corruption in ('substitutive', 'conjunctive'):
        for noise in ['pixel'] + [f'feature_l{i}' for i in range(4)]:
            assert f'{corruption}_encoder_{noise}' in CELLS
        assert f'{corruption}_decoder_pixel' in CELLS
    # Decoder-style feature noise is a nonsensical cell (docs/study.md).
    assert not [c for c in CELLS if '_decoder_feature' in c]


def test_every_cell_is_documented():
    with open(osp.join(ROOT, 'docs', 'study.md')) as f:
        doc = f.read()
    missing = [c for c in CELLS if f'`{c}`' not in doc]
    assert not missing, f'cells missing from docs/study.md: {missing}'


@pytest.mark.parametrize('cell', CELLS)
def test_cell_builds_and_trains_one_step(cell):
    cfg = Config.fromfile(osp.join(STUDY, cell + '.py'))
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    size = cfg.model.backbone.img_size
    data = dict(
        inputs=torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8),
        data_samples=[DataSample() for _ in range(2)])
    before = model.backbone.layers[0].attn.qkv.weight.detach().clone()

    log_vars = model.train_step(data, optim_wrapper)

    assert set(log_vars) == expected_losses(cell) | {'loss'}
    assert all(torch.isfinite(v) for v in log_vars.values())
    after = model.backbone.layers[0].attn.qkv.weight
    assert torch.isfinite(after).all() and not torch.equal(before, after)


@pytest.mark.parametrize('name', ['photo_crops', 'digits', 'imagenet100_vit-s'])
def test_protocol_cells_exist(name):
    from noisemim.study import load_protocol
    protocol = load_protocol(osp.join(STUDY, 'protocols', name + '.py'))
    cells = protocol.cells + protocol.principle_cells
    assert cells and protocol.probe.train and protocol.probe.val
    for cell in cells:
        assert osp.isfile(osp.join(STUDY, cell + '.py')), cell


GPU_CELLS = sorted(
    osp.basename(p)[:-3]
    for p in glob.glob(osp.join(STUDY, 'imagenet100', '*.py')))


@pytest.mark.parametrize('cell', GPU_CELLS)
def test_gpu_preset_cells_are_vit_s(cell):
    """The ImageNet-100 preset's cells build at ViT-S/16, 224 px (not run)."""
    assert cell in CELLS  # the same grid cell as at the CPU scale
    cfg = Config.fromfile(osp.join(STUDY, 'imagenet100', cell + '.py'))
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(model_cfg)
    vit = model.backbone
    assert (vit.embed_dims, len(vit.layers), vit.patch_resolution) == (
        384, 12, (14, 14))
    assert vit.layers[0].attn.num_heads == 6
    assert cfg.train_dataloader.dataset.data_root == 'data/imagenet100/'
    tiny = Config.fromfile(osp.join(STUDY, cell + '.py'))
    assert cfg.model.type == tiny.model.type
    assert cfg.get('study_method') == tiny.get('study_method')
