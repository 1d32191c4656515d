"""DiffMAE, MaskDiT-style and substitutive encoder baselines: their loss terms
on hand-made cases and against a direct computation."""
import copy
import math

import pytest
import torch

from noisemim.models.corruption import cosine_alpha_bar
from noisemim.models.pixel_noise import PixelNoise

from conftest import TINY_ARCH, tiny_backbone

PATCH = 8
IMG = 32
GRID = IMG // PATCH
PIXELS = PATCH**2 * 3


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mae_parts(norm_pix: bool = True) -> dict:
    """A tiny MAE-family config (32 px, 8 px patches, 1-block decoder)."""
    return dict(
        backbone=dict(
            type='MAEViT',
            arch=copy.deepcopy(TINY_ARCH),
            img_size=IMG,
            patch_size=PATCH,
            mask_ratio=0.75),
        neck=dict(
            type='MAEPretrainDecoder',
            num_patches=GRID**2,
            patch_size=PATCH,
            embed_dim=64,
            decoder_embed_dim=32,
            decoder_depth=1,
            decoder_num_heads=2),
        head=dict(
            type='MAEPretrainHead',
            norm_pix=norm_pix,
            patch_size=PATCH,
            loss=dict(type='PixelReconstructionLoss', criterion='L2')))


def diffmae(norm_pix: bool = True) -> dict:
    cfg = dict(type='DiffMAE', **mae_parts(norm_pix))
    cfg['neck']['type'] = 'DiffMAEDecoder'
    return cfg


def maskdit(norm_pix: bool = True) -> dict:
    cfg = dict(type='MaskDiT', **mae_parts(norm_pix))
    cfg['backbone']['type'] = 'MaskDiTViT'
    return cfg


def patches_of(images: torch.Tensor) -> torch.Tensor:
    """Flattened patches, written out independently of noisemim.patches."""
    B = images.shape[0]
    x = images.reshape(B, 3, GRID, PATCH, GRID, PATCH)
    return torch.einsum('nchpwq->nhwpqc', x).reshape(B, GRID**2, PIXELS)


def constant_patch_images(values: torch.Tensor) -> torch.Tensor:
    """Images whose patch ``i`` is the constant ``values[b, i]``."""
    grid = values.view(-1, 1, GRID, GRID)
    return grid.repeat_interleave(PATCH, 2).repeat_interleave(PATCH, 3).expand(
        -1, 3, -1, -1).contiguous()


def fixed_noise(batch: int, t: float) -> PixelNoise:
    gen = torch.Generator().manual_seed(7)
    tt = torch.full((batch, ), t)
    return PixelNoise(
        t=tt,
        alpha_bar=cosine_alpha_bar(tt),
        eps=torch.randn(batch, GRID**2, PIXELS, generator=gen))


def manual_noise(patches: torch.Tensor, noise: PixelNoise) -> torch.Tensor:
    ab = noise.alpha_bar.view(-1, 1, 1)
    rms = patches.pow(2).mean(-1, keepdim=True).sqrt()
    return ab.sqrt() * patches + (1 - ab).sqrt() * rms * noise.eps


def norm_pix(patches: torch.Tensor) -> torch.Tensor:
    mean = patches.mean(-1, keepdim=True)
    var = patches.var(-1, keepdim=True)
    return (patches - mean) / (var + 1e-6).sqrt()


def masked_mse(pred, target, weight) -> torch.Tensor:
    per_patch = (pred - target).pow(2).mean(-1)
    return (per_patch * weight).sum() / weight.sum()


def zero_predictor(model) -> None:
    torch.nn.init.zeros_(model.neck.decoder_pred.weight)
    torch.nn.init.zeros_(model.neck.decoder_pred.bias)


def mask_for_seed(model, images, seed: int) -> torch.Tensor:
    """The MAE mask ``model.backbone`` draws after ``manual_seed(seed)``."""
    torch.manual_seed(seed)
    if type(model.backbone).__name__ == 'MaskDiTViT':
        return model.backbone(images, t=torch.zeros(images.shape[0]))[1]
    return model.backbone(images)[1]


# --------------------------------------------------------------- DiffMAE


def test_diffmae_zero_prediction_covers_masked_patches_only(build_model):
    model = build_model(diffmae(norm_pix=False))
    zero_predictor(model)
    values = torch.arange(2 * GRID**2, dtype=torch.float).view(2, -1) / 10
    images = constant_patch_images(values)
    mask = mask_for_seed(model, images, seed=3)
    torch.manual_seed(3)
    loss = model.loss(images, [], noise=fixed_noise(2, 0.5))['loss_mim']
    # pred = 0, target = c_i on patch i: the loss is the mean of c_i^2 over M.
    expected = (values**2 * mask).sum() / mask.sum()
    assert mask.sum() == 2 * round(0.75 * GRID**2)
    torch.testing.assert_close(loss, expected)
    # ... and not over all patches.
    assert not torch.isclose(loss, (values**2).mean())


def test_diffmae_loss_matches_direct_computation(build_model):
    model = build_model(diffmae())
    images = torch.randn(2, 3, IMG, IMG)
    noise = fixed_noise(2, 0.4)
    torch.manual_seed(5)
    loss = model.loss(images, [], noise=noise)['loss_mim']

    torch.manual_seed(5)
    latent, mask, ids_restore = model.backbone(images)
    patches = patches_of(images)
    pred = model.neck(latent, ids_restore, manual_noise(patches, noise),
                      noise.t)
    torch.testing.assert_close(loss,
                               masked_mse(pred, norm_pix(patches), mask))


def test_diffmae_decoder_reads_noised_patches_at_masked_positions_only(
        build_model):
    model = build_model(diffmae())
    model.eval()
    latent = torch.randn(1, 1 + 4, 64)
    ids_restore = torch.randperm(GRID**2)[None]
    masked = ids_restore[0] >= 4
    noised = torch.randn(1, GRID**2, PIXELS)
    t = torch.tensor([0.3])
    with torch.no_grad():
        base = model.neck(latent, ids_restore, noised, t)
        at_visible, at_masked = noised.clone(), noised.clone()
        at_visible[0, ~masked] += 1.
        at_masked[0, masked.nonzero()[0]] += 1.
        torch.testing.assert_close(
            model.neck(latent, ids_restore, at_visible, t), base)
        assert not torch.allclose(
            model.neck(latent, ids_restore, at_masked, t), base)
        # The noise level conditions the decoder.
        assert not torch.allclose(
            model.neck(latent, ids_restore, noised, torch.tensor([0.9])),
            base)


def test_diffmae_rejects_a_plain_mae_decoder_and_a_bad_t_range(build_model):
    cfg = diffmae()
    cfg['neck']['type'] = 'MAEPretrainDecoder'
    with pytest.raises(TypeError, match='DiffMAEDecoder'):
        build_model(cfg)
    with pytest.raises(ValueError, match=r't_range.*\(0\.5, 0\.2\)'):
        build_model(dict(diffmae(), t_range=(0.5, 0.2)))


# --------------------------------------------------------------- MaskDiT


def test_maskdit_terms_split_masked_and_visible_patches(build_model):
    model = build_model(maskdit(norm_pix=False))
    zero_predictor(model)
    values = torch.rand(2, GRID**2) + 0.5
    images = constant_patch_images(values)
    noise = fixed_noise(2, 0.7)
    mask = mask_for_seed(model, images, seed=11)
    torch.manual_seed(11)
    losses = model.loss(images, [], noise=noise)
    assert set(losses) == {'loss_mim', 'loss_denoise'}
    # pred = 0 against the *clean* pixels c_i: masked vs visible means.
    torch.testing.assert_close(losses['loss_mim'],
                               (values**2 * mask).sum() / mask.sum())
    torch.testing.assert_close(
        losses['loss_denoise'],
        (values**2 * (1 - mask)).sum() / (1 - mask).sum())


def test_maskdit_loss_matches_direct_computation(build_model):
    model = build_model(maskdit())
    images = torch.randn(2, 3, IMG, IMG)
    noise = fixed_noise(2, 0.6)
    torch.manual_seed(2)
    losses = model.loss(images, [], noise=noise)

    patches = patches_of(images)
    noised = manual_noise(patches, noise)
    noised_images = torch.einsum(
        'nhwpqc->nchpwq', noised.reshape(2, GRID, GRID, PATCH, PATCH,
                                         3)).reshape(2, 3, IMG, IMG)
    torch.manual_seed(2)
    latent, mask, ids_restore = model.backbone(noised_images, t=noise.t)
    pred = model.neck(latent, ids_restore)
    target = norm_pix(patches)
    torch.testing.assert_close(losses['loss_mim'],
                               masked_mse(pred, target, mask))
    torch.testing.assert_close(losses['loss_denoise'],
                               masked_mse(pred, target, 1 - mask))


def test_maskdit_time_embedding_vanishes_for_clean_images(build_model):
    vit = build_model(maskdit()).backbone
    images = torch.randn(2, 3, IMG, IMG)
    outputs = {}
    for name, t in (('mae', None), ('zero', torch.zeros(2)),
                    ('noisy', torch.full((2, ), 0.5))):
        torch.manual_seed(0)
        outputs[name] = vit(images, t=t)[0]
    torch.testing.assert_close(outputs['zero'], outputs['mae'])
    assert not torch.allclose(outputs['noisy'], outputs['mae'])


def test_maskdit_needs_its_backbone(build_model):
    cfg = maskdit()
    cfg['backbone']['type'] = 'MAEViT'
    with pytest.raises(TypeError, match='MaskDiTViT'):
        build_model(cfg)


# ------------------------------------------------- substitutive, encoder


def substitutive(**backbone) -> dict:
    cfg = dict(
        type='SubstitutiveNoiseMIM',
        backbone=tiny_backbone(noise_ratio=0., **backbone),
        mim_head=dict(
            type='TokenRegressionHead', in_channels=64, out_channels=PIXELS),
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor', mean=[0, 0, 0], std=[1, 1, 1]))
    return cfg


def test_substitutive_corruption_noises_the_mask_instead_of_masking(
        build_model):
    model = build_model(substitutive(noise_layer=1))
    images = torch.randn(3, 3, IMG, IMG)
    corruption = model.sample_corruption(
        images, torch.Generator().manual_seed(4))
    # M as the backbone's sampler draws it from the same generator.
    reference = model.backbone.corruption_sampler(
        3, (GRID, GRID), 'cpu', torch.Generator().manual_seed(4))
    assert not corruption.mask.any()
    assert corruption.masked_index.shape == (3, 0)
    torch.testing.assert_close(corruption.noised, reference.mask)
    torch.testing.assert_close(corruption.noised_index, reference.masked_index)
    torch.testing.assert_close(corruption.t, reference.t)
    assert corruption.eps.shape == (3, reference.masked_index.shape[1], 64)


def test_substitutive_loss_matches_direct_computation(build_model):
    model = build_model(substitutive(noise_layer=2))
    images = torch.randn(2, 3, IMG, IMG)
    corruption = model.sample_corruption(
        images, torch.Generator().manual_seed(1))
    loss = model.loss(images, [], corruption=corruption)
    assert set(loss) == {'loss_mim'}

    vit = model.backbone
    # Direct: the ViT's blocks, noising the tokens of M entering block 2.
    tokens = vit.patch_embed(images)[0]
    tokens = torch.cat([vit.cls_token.expand(2, -1, -1), tokens], 1)
    tokens = tokens + vit.pos_embed
    index = corruption.noised_index + 1
    for i, layer in enumerate(vit.layers):
        if i == 2:
            rows = tokens.gather(1, index[..., None].expand(-1, -1, 64))
            ab = corruption.alpha_bar.view(-1, 1, 1)
            rms = rows.pow(2).mean(-1, keepdim=True).sqrt()
            noised = ab.sqrt() * rows + (1 - ab).sqrt() * rms * corruption.eps
            tokens = tokens.scatter(1, index[..., None].expand(-1, -1, 64),
                                    noised)
        tokens = layer(tokens)
    pred = model.mim_head.predictor(vit.ln1(tokens)[:, 1:])
    expected = masked_mse(pred, norm_pix(patches_of(images)),
                          corruption.noised.float())
    torch.testing.assert_close(loss['loss_mim'], expected)


def test_substitutive_ignores_the_mask_token_and_uses_the_noise(build_model):
    model = build_model(substitutive(noise_layer='pixel'))
    images = torch.randn(2, 3, IMG, IMG)
    corruption = model.sample_corruption(
        images, torch.Generator().manual_seed(9))
    assert corruption.eps.shape[-1] == PIXELS
    with torch.no_grad():
        base = model.loss(images, [], corruption=corruption)['loss_mim']
        model.backbone.mask_token.add_(5.)
        assert model.loss(
            images, [], corruption=corruption)['loss_mim'] == base
        corruption.eps.mul_(-1.)
        assert model.loss(
            images, [], corruption=corruption)['loss_mim'] != base


def test_substitutive_rejects_a_separate_noised_set(build_model):
    cfg = substitutive()
    cfg['backbone']['noise_ratio'] = 0.3
    with pytest.raises(ValueError, match='noise_ratio.*0.3'):
        build_model(cfg)


def test_pixel_noise_draw_is_in_range():
    from noisemim.models.pixel_noise import draw_pixel_noise
    noise = draw_pixel_noise(64, 4, 12, (0.2, 0.3), torch.device('cpu'))
    assert ((noise.t >= 0.2) & (noise.t <= 0.3)).all()
    expected = torch.cos((noise.t + 0.008) / 1.008 * math.pi / 2)**2
    torch.testing.assert_close(noise.alpha_bar, expected)
    assert noise.eps.shape == (64, 4, 12)
