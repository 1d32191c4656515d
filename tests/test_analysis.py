"""The analyses of issue 7 on constructed cases, and the tools end to end."""
import copy
import json
import os.path as osp
import runpy

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from conftest import tiny_noisemim
from noisemim.analysis import (
    CheckpointMismatchError, HeadDiversity, class_token_attention,
    denormalize_patches, diagonal_log_amplitude, head_kl_matrix, image_paths,
    load_model, paste_patches, per_head_kl, probe_encoder, reconstruct,
    relative_log_amplitude, to_display, tokens_to_feature_map)
from noisemim.analysis.spectrum import (EPS, amplitude_spectrum,
                                        diagonal_frequencies)
from noisemim.models.algorithms.noisemim import normalize_patches
from noisemim.models.backbones.noisemim_vit import QueryKey
from noisemim.models.corruption import Corruption
from noisemim.models.patches import patchify

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO = osp.join(ROOT, 'configs/pretrain/noisemim_vit-tiny_demo.py')
MAE_DEMO = osp.join(ROOT, 'configs/pretrain/mae_vit-tiny_demo.py')
PNG_MAGIC = b'\x89PNG'


@pytest.fixture(scope='module')
def mae_model():
    """The tiny MAE of ``configs/pretrain/mae_vit-tiny_demo.py`` (random)."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(MAE_DEMO)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    return MODELS.build(model_cfg).eval()


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory):
    """Two small generated photos of different sizes (BGR PNGs)."""
    folder = tmp_path_factory.mktemp('images')
    yy, xx = np.mgrid[0:72, 0:90]
    first = np.stack([xx * 2.5, yy * 3.0, (xx + yy) * 1.5], -1)
    second = np.stack([np.sin(xx / 5.) * 100 + 120, yy * 2., 80 + 0 * xx], -1)
    cv2.imwrite(str(folder / 'a.png'), first.clip(0, 255).astype(np.uint8))
    cv2.imwrite(
        str(folder / 'b.png'), second[:64, :70].clip(0, 255).astype(np.uint8))
    return str(folder)


def run_tool(name: str, argv: list) -> None:
    """Run ``tools/analysis/<name>.py`` in this process."""
    tool = runpy.run_path(osp.join(ROOT, 'tools/analysis', f'{name}.py'))
    tool['main'](argv)


# -- head diversity ---------------------------------------------------------


def test_identical_heads_give_zero_kl():
    logits = torch.randn(2, 1, 5, 5).expand(-1, 3, -1, -1)
    kl = head_kl_matrix(logits.log_softmax(-1))
    assert torch.allclose(kl, torch.zeros(3, 3), atol=1e-6)

    # The same through queries and keys: all heads share q and k.
    q = torch.randn(2, 1, 5, 8).expand(-1, 4, -1, -1)
    k = torch.randn(2, 1, 5, 8).expand(-1, 4, -1, -1)
    meter = HeadDiversity()
    meter.update([0], [QueryKey(q, k)])
    assert torch.allclose(
        per_head_kl(meter.compute()[0]),
        torch.zeros(4, dtype=torch.float64),
        atol=1e-6)


def test_head_kl_matches_kl_per_query_averaged():
    log_p = torch.randn(3, 2, 6, 7).log_softmax(-1)
    kl = head_kl_matrix(log_p)
    # F.kl_div(input=log Q, target=log P, log_target) = sum P (log P - log Q)
    direct = F.kl_div(
        log_p[:, 1], log_p[:, 0], log_target=True,
        reduction='none').sum(-1).mean()
    assert torch.allclose(kl[0, 1], direct, atol=1e-5)
    assert kl[0, 1] > 0.01 and kl[1, 0] > 0.01 and kl[0, 0] == 0
    # The block value is the image-weighted mean over batches.
    meter = HeadDiversity()
    q, k = torch.randn(3, 2, 6, 4), torch.randn(3, 2, 6, 4)
    meter.update([5], [QueryKey(q[:1], k[:1])])
    meter.update([5], [QueryKey(q[1:], k[1:])])
    whole = head_kl_matrix((q @ k.transpose(-2, -1) / 2).log_softmax(-1))
    assert torch.allclose(meter.compute()[5].float(), whole, atol=1e-5)


# -- frequency spectrum ------------------------------------------------------


def test_constant_feature_map_has_no_high_frequency():
    const = torch.full((2, 3, 8, 8), 0.7)
    amp = amplitude_spectrum(const)
    rows, cols = diagonal_frequencies((8, 8))
    assert (rows.tolist(), cols.tolist()) == ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4])
    assert torch.allclose(amp[..., 0, 0],
                          torch.full((2, 3), 0.7 * 64., dtype=torch.float64))
    high = amp.clone()
    high[..., 0, 0] = 0
    assert high.abs().max() < 1e-9  # zero amplitude away from frequency 0
    rel = relative_log_amplitude(const)
    assert rel[0] == 0
    assert torch.allclose(
        rel[-1],
        torch.tensor(np.log(EPS) - np.log(0.7 * 64), dtype=torch.float64),
        atol=1e-3)


def test_checkerboard_has_its_energy_at_the_highest_frequency():
    i, j = torch.meshgrid(torch.arange(4), torch.arange(6), indexing='ij')
    board = ((-1.)**(i + j)).expand(1, 2, 4, 6)
    profile = diagonal_log_amplitude(board)
    assert profile.shape == (3, )  # 0, pi/2, pi on a 4x6 grid
    assert torch.allclose(profile[-1].exp(),
                          torch.tensor(24. + EPS, dtype=torch.float64))
    # log(24) - log(eps): everything at pi, nothing at frequency 0
    assert torch.allclose(
        relative_log_amplitude(board)[-1],
        torch.tensor(np.log(24.) - np.log(EPS), dtype=torch.float64),
        atol=1e-3)


def test_tokens_to_feature_map_keeps_the_grid_order():
    tokens = torch.arange(6.).view(1, 6, 1).expand(-1, -1, 2)
    fmap = tokens_to_feature_map(tokens, (2, 3))
    assert fmap.shape == (1, 2, 2, 3)
    assert fmap[0, 1].tolist() == [[0., 1., 2.], [3., 4., 5.]]
    with pytest.raises(ValueError, match='3x3'):
        tokens_to_feature_map(tokens, (3, 3))


# -- attention ----------------------------------------------------------------


def test_class_attention_maps_sum_to_one_per_head():
    q, k = torch.randn(2, 3, 1 + 12, 8), torch.randn(2, 3, 1 + 12, 8)
    attn = class_token_attention(QueryKey(q, k), 1, (3, 4))
    assert attn.maps.shape == (2, 3, 3, 4)
    assert torch.allclose(attn.maps.sum((-2, -1)), torch.ones(2, 3))
    assert torch.allclose(attn.mean_map.sum((-2, -1)), torch.ones(2))
    row = (q[:, :, 0:1] @ k.transpose(-2, -1) / 8**.5).softmax(-1)[:, :, 0]
    assert torch.allclose(attn.extra_share, row[..., 0], atol=1e-6)
    assert torch.allclose(
        attn.maps.flatten(2),
        row[..., 1:] / row[..., 1:].sum(-1, keepdim=True),
        atol=1e-6)
    with pytest.raises(ValueError, match='class token'):
        class_token_attention(QueryKey(q, k), 0, (3, 4))


def test_probe_matches_noisemim_own_queries_and_keys(build_model):
    model = build_model(tiny_noisemim()).eval()
    x = torch.randn(2, 3, 32, 32)
    probe = probe_encoder(model, x)
    # NoiseMIM's probe path with an empty corruption is the clean forward.
    B, N, D = 2, 16, 64
    none = Corruption(
        mask=torch.zeros(B, N, dtype=torch.bool),
        noised=torch.zeros(B, N, dtype=torch.bool),
        masked_index=torch.zeros(B, 0, dtype=torch.long),
        noised_index=torch.zeros(B, 0, dtype=torch.long),
        t=torch.zeros(B),
        alpha_bar=torch.ones(B),
        eps=torch.zeros(B, 0, D))
    with torch.no_grad():
        out = model.backbone(x, none, probe_layers=range(4))
    for b in range(4):
        assert torch.allclose(
            probe.attention[b].q, out.attention[b].q, atol=1e-5)
        assert torch.allclose(
            probe.attention[b].k, out.attention[b].k, atol=1e-5)
    final = model.backbone.ln1(probe.features[-1])[:, 1:]
    assert torch.allclose(final, out.tokens, atol=1e-5)
    assert probe.patch_resolution == (4, 4) and probe.num_extra_tokens == 1


def test_probe_sees_every_patch_of_an_mae_encoder(mae_model):
    model = mae_model
    probe = probe_encoder(model, torch.randn(1, 3, 64, 64), blocks=[1, 3])
    assert len(probe.attention) == len(probe.features) == 2
    assert probe.features[0].shape == (1, 1 + 64, 64)  # no MAE masking
    assert probe.attention[1].q.shape == (1, 4, 1 + 64, 16)
    with pytest.raises(ValueError, match='blocks must be in'):
        probe_encoder(model, torch.randn(1, 3, 64, 64), blocks=[4])


# -- reconstruction -----------------------------------------------------------


def test_true_pixels_as_prediction_show_the_original():
    images = torch.randn(2, 3, 16, 24) * 3 + 1
    patches = patchify(images, 8)
    where = torch.rand(2, 6) > 0.5
    for norm_pix, pred in ((True, normalize_patches(patches)), (False,
                                                                patches)):
        shown, error = paste_patches(images, pred, where, 8, norm_pix)
        assert torch.allclose(shown, images, atol=1e-4)
        assert torch.allclose(error, torch.zeros(2), atol=1e-8)
    # A wrong (normalised) prediction changes exactly the patches of `where`.
    shown, error = paste_patches(images, torch.zeros_like(patches), where, 8,
                                 True)
    changed = (patchify(shown, 8) - patches).abs().amax(-1) > 1e-3
    assert torch.equal(changed, where) and (error > 0.5).all()
    mean = patches.mean(-1, keepdim=True)
    assert torch.allclose(
        denormalize_patches(torch.zeros_like(patches), patches),
        mean.expand_as(patches))


def test_noisemim_reconstruction_with_perfect_heads(build_model):
    model = build_model(tiny_noisemim()).eval()
    x = torch.randn(2, 3, 32, 32)
    truth = normalize_patches(patchify(x, 8))
    model.mim_head.forward = lambda tokens: truth
    model.denoise_head.forward = lambda tokens: truth
    rec = reconstruct(model, x, seed=3)
    assert torch.allclose(rec.mim, x, atol=1e-4)
    assert torch.allclose(rec.denoise, x, atol=1e-4)
    assert torch.equal(rec.corrupted, x)  # the noise is in feature space
    # ceil(60 % of 4 mask units) = 3 units of 2x2 patches; half the 4
    # visible patches are noised.
    assert rec.mask.sum(1).tolist() == [12, 12]
    assert rec.noised.sum(1).tolist() == [2, 2]
    assert not (rec.mask & rec.noised).any()
    assert all(
        torch.allclose(e, torch.zeros(2), atol=1e-8)
        for e in rec.errors.values())
    # Seeded: the same seed draws the same corruption.
    assert torch.equal(reconstruct(model, x, seed=3).mask, rec.mask)


def test_subclasses_need_their_own_reconstruction_view(build_model):
    from noisemim.models.algorithms.noisemim import NoiseMIM

    class OtherTargets(NoiseMIM):  # e.g. a head that predicts features
        pass

    model = build_model(tiny_noisemim())
    model.__class__ = OtherTargets
    with pytest.raises(
            TypeError,
            match='OtherTargets.*supported: MAE, '
            'NoiseMIM.*register_reconstructor'):
        reconstruct(model, torch.randn(1, 3, 32, 32))


def test_mae_reconstruction_with_perfect_decoder(mae_model):
    model = copy.deepcopy(mae_model)
    x = torch.randn(2, 3, 64, 64)
    truth = normalize_patches(patchify(x, 8))
    model.neck.forward = lambda latent, ids_restore: truth
    state = torch.random.get_rng_state()
    rec = reconstruct(model, x, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.allclose(rec.mim, x, atol=1e-4)
    assert rec.denoise is None and rec.noised is None
    assert rec.mask.float().mean() == 0.75
    assert torch.allclose(
        to_display(rec.mim, model), to_display(x, model), atol=1e-5)


# -- loading ------------------------------------------------------------------


def test_checkpoint_that_does_not_fit_lists_the_keys(tiny_pretrain_checkpoint,
                                                     tmp_path):
    ckpt = torch.load(tiny_pretrain_checkpoint)
    ckpt['state_dict'].pop('mim_head.predictor.weight')
    ckpt['state_dict']['neck.extra.weight'] = torch.zeros(1)
    bad = str(tmp_path / 'bad.pth')
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointMismatchError) as err:
        load_model(bad, DEMO)
    message = str(err.value)
    assert 'missing keys' in message and 'mim_head.predictor.weight' in message
    assert 'unexpected key' in message and 'neck.extra.weight' in message
    assert bad in message
    # A checkpoint of another architecture: shape mismatches are named too.
    with pytest.raises(
            CheckpointMismatchError, match='neck.decoder_pred.weight'):
        load_model(tiny_pretrain_checkpoint, MAE_DEMO)
    with pytest.raises(ValueError, match='--config'):
        load_model(tiny_pretrain_checkpoint)


def test_config_from_checkpoint_meta(tiny_pretrain_checkpoint, tmp_path):
    ckpt = torch.load(tiny_pretrain_checkpoint)
    ckpt['meta']['cfg'] = Config.fromfile(DEMO).pretty_text
    path = str(tmp_path / 'with_cfg.pth')
    torch.save(ckpt, path)
    model, cfg = load_model(path)
    assert type(model).__name__ == 'NoiseMIM' and not model.training
    assert torch.equal(model.state_dict()['backbone.pos_embed'],
                       ckpt['state_dict']['backbone.pos_embed'])


def test_image_paths(image_dir, tmp_path):
    assert [osp.basename(p)
            for p in image_paths(image_dir)] == ['a.png', 'b.png']
    assert len(image_paths(None, 2)) == 2  # the embedded photographs
    with pytest.raises(FileNotFoundError, match='nowhere'):
        image_paths(str(tmp_path / 'nowhere'))
    with pytest.raises(FileNotFoundError, match='no images'):
        image_paths(str(tmp_path))


# -- the tools ----------------------------------------------------------------


def test_tools_run_end_to_end(tiny_pretrain_checkpoint, image_dir, tmp_path):
    common = [
        '--config', DEMO, '--images', image_dir, '--out-dir',
        str(tmp_path)
    ]
    run_tool('head_diversity', [tiny_pretrain_checkpoint] * 2 + common +
             ['--labels', 'first', 'second', '--batch-size', '1'])
    run_tool('feature_spectrum', [tiny_pretrain_checkpoint] + common)
    run_tool('attention_maps', [tiny_pretrain_checkpoint] + common)
    run_tool('reconstruction', [tiny_pretrain_checkpoint] + common)
    for name in ('head_diversity', 'feature_spectrum', 'attention_maps',
                 'reconstruction'):
        with open(tmp_path / f'{name}.png', 'rb') as f:
            assert f.read(4) == PNG_MAGIC, name

    rows = (tmp_path / 'head_diversity.csv').read_text().splitlines()
    assert rows[0] == 'model,block,head,kl'
    assert len(rows) == 1 + 2 * 4 * (4 + 1)  # 2 models x 4 blocks x (4 + mean)
    first = [r for r in rows[1:] if r.startswith('first,')]
    second = [r for r in rows[1:] if r.startswith('second,')]
    assert [r.split(',', 1)[1]
            for r in first] == [r.split(',', 1)[1]
                                for r in second]  # the same checkpoint twice
    kl = json.loads((tmp_path / 'head_diversity.json').read_text())
    assert kl['images'] == 2 and np.allclose(
        np.diag(kl['kl_matrix']['first']['3']), 0)

    spectrum = (tmp_path / 'feature_spectrum.csv').read_text().splitlines()
    assert len(spectrum) == 1 + 4
    profiles = json.loads((tmp_path / 'feature_spectrum.json').read_text())
    (blocks, ) = profiles['profiles'].values()
    assert sorted(blocks) == ['0', '1', '2', '3']
    assert len(blocks['0']) == 5 and blocks['0'][0] == 0  # 0, pi/4, ..., pi

    maps = json.loads((tmp_path / 'attention_maps.json').read_text())
    (model_maps, ) = maps.values()
    assert model_maps['block'] == 3 and set(
        model_maps['images']) == {'a.png', 'b.png'}
    head_maps = np.array(model_maps['images']['a.png']['head_maps'])
    assert head_maps.shape == (4, 8, 8)
    assert np.allclose(head_maps.sum((1, 2)), 1, atol=1e-5)

    rec = json.loads((tmp_path / 'reconstruction.json').read_text())
    (per_image, ) = rec.values()
    a = per_image['a.png']
    assert a['masked_share'] == 0.625  # ceil(0.6 * 16 units) / 16
    assert a['noised_share'] == 0.1875  # half of the 6 visible units' patches
    assert a['mim_mse'] > 0 and a['denoise_mse'] > 0


def test_reconstruction_tool_on_an_mae_checkpoint(mae_model, image_dir,
                                                  tmp_path):
    model = mae_model
    ckpt = str(tmp_path / 'mae.pth')
    torch.save(
        dict(
            meta=dict(cfg=Config.fromfile(MAE_DEMO).pretty_text),
            state_dict=model.state_dict()), ckpt)
    common = [
        '--images', image_dir, '--num-images', '1', '--out-dir',
        str(tmp_path)
    ]
    run_tool('reconstruction', [ckpt, '--labels', 'mae'] + common)
    rec = json.loads((tmp_path / 'reconstruction.json').read_text())
    assert set(
        rec['mae']['a.png']) == {'masked_share', 'noised_share', 'mim_mse'}
    assert rec['mae']['a.png']['masked_share'] == 0.75
    with open(tmp_path / 'reconstruction.png', 'rb') as f:
        assert f.read(4) == PNG_MAGIC


# -- gradient of each loss term per block -----------------------------------


def _direct_norms(model, inputs, groups, seed):
    """Each term's gradient norm per group by ``backward`` on its own."""
    from noisemim.analysis.loss_gradients import loss_terms
    out = {}
    torch.manual_seed(seed)
    terms = loss_terms(model, inputs)
    for name, term in terms.items():
        model.zero_grad()
        term.backward(retain_graph=True)
        out[name] = {
            g: sum(float(p.grad.pow(2).sum()) for p in params
                   if p.grad is not None)**.5
            for g, params in groups.items()
        }
    model.zero_grad()
    return out


def test_loss_gradients_per_term_and_block(build_model):
    from noisemim.analysis.loss_gradients import (measure_loss_gradients,
                                                  parameter_groups)
    torch.manual_seed(0)
    model = build_model(tiny_noisemim())
    groups = parameter_groups(model)
    assert list(groups) == [
        'embed', 'block0', 'block1', 'block2', 'block3', 'norm', 'rest'
    ]
    assert sum(len(g) for g in groups.values()) == len(
        list(model.parameters()))
    inputs = torch.randn(4, 3, 32, 32)

    norms = measure_loss_gradients(model, [inputs], seed=3)
    assert set(norms) == {
        'loss_mim', 'loss_denoise', 'loss_disruption', 'total'
    }
    direct = _direct_norms(model, inputs, groups, seed=3)
    for term, row in direct.items():
        for group, value in row.items():
            assert norms[term][group] == pytest.approx(
                value, rel=1e-4, abs=1e-9), (term, group)
    # Each term on its own: the disruption loss (attention of blocks 2-3)
    # never reaches the heads or the final norm, the others do.
    assert norms['loss_disruption']['rest'] == 0
    assert norms['loss_disruption']['norm'] == 0
    assert norms['loss_disruption']['block0'] > 0
    assert norms['loss_mim']['rest'] > 0 and norms['loss_denoise']['rest'] > 0
    assert not any(p.grad is not None for p in model.parameters())


def test_loss_gradients_tool_end_to_end(tiny_pretrain_checkpoint, image_dir,
                                        tmp_path):
    common = ['--images', image_dir, '--batch-size', '1']
    run_tool('loss_gradients',
             [DEMO, '--checkpoint', tiny_pretrain_checkpoint, '--out-dir',
              str(tmp_path / 'ckpt')] + common)
    saved = json.loads((tmp_path / 'ckpt' / 'loss_gradients.json').read_text())
    assert saved['images'] == 2
    grads = saved['grad_norm']
    assert set(grads) == {
        'loss_mim', 'loss_denoise', 'loss_disruption', 'total'
    }
    assert all(
        set(row) == {'embed', 'block0', 'block1', 'block2', 'block3', 'norm',
                     'rest'} for row in grads.values())
    rows = (tmp_path / 'ckpt' / 'loss_gradients.csv').read_text().splitlines()
    assert rows[0] == 'term,group,grad_norm' and len(rows) == 1 + 4 * 7

    # Any config: mmpretrain's MAE (one term), untrained, with an override.
    run_tool('loss_gradients', [
        MAE_DEMO, '--out-dir', str(tmp_path / 'mae'), '--cfg-options',
        'model.backbone.mask_ratio=0.5'
    ] + common)
    mae = json.loads((tmp_path / 'mae' / 'loss_gradients.json').read_text())
    assert set(mae['grad_norm']) == {'loss', 'total'}
    assert mae['grad_norm']['loss']['block0'] > 0
