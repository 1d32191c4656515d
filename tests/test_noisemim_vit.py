import copy

import pytest
import torch
from mmpretrain.models import VisionTransformer
from mmpretrain.registry import MODELS

from conftest import TINY_ARCH, tiny_backbone


@pytest.mark.parametrize('out_type', ['raw', 'featmap', 'cls_token',
                                      'avg_featmap'])
def test_uncorrupted_forward_and_keys_equal_vision_transformer(out_type):
    common = dict(arch=copy.deepcopy(TINY_ARCH), img_size=32, patch_size=8,
                  out_type=out_type, out_indices=[1, 3])
    ours = MODELS.build(dict(type='NoiseMIMViT', mask_unit=16, **common))
    ref = VisionTransformer(**copy.deepcopy(common))
    for model in (ours, ref):
        model.init_weights()
        model.eval()  # (mmpretrain's backbones' eval() returns None)
    extra = set(ours.state_dict()) - set(ref.state_dict())
    assert extra == {'mask_token'}
    assert set(ref.state_dict()) <= set(ours.state_dict())
    x = torch.randn(2, 3, 32, 32)
    # ours -> reference
    ref.load_state_dict(
        {k: v for k, v in ours.state_dict().items() if k != 'mask_token'},
        strict=True)
    for a, b in zip(ours(x), ref(x)):
        assert torch.allclose(a, b)
    # reference -> ours (the mask token is the only key it lacks)
    ref.init_weights()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert missing == ['mask_token'] and unexpected == []
    for a, b in zip(ours(x), ref(x)):
        assert torch.allclose(a, b)


def _block_inputs(model, x, corruption):
    inputs = {}
    hooks = [
        layer.register_forward_pre_hook(
            lambda m, args, i=i: inputs.__setitem__(i, args[0].detach()))
        for i, layer in enumerate(model.layers)
    ]
    model(x, corruption)
    for h in hooks:
        h.remove()
    return inputs


@pytest.mark.parametrize('noise_layer', [0, 2, 3])
def test_noise_changes_exactly_the_noised_tokens_at_the_noise_layer(
        build_model, noise_layer):
    model = build_model(tiny_backbone(noise_layer=noise_layer))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    corruption = model.sample_corruption(
        x, generator=torch.Generator().manual_seed(0))
    clean = copy.copy(corruption)
    clean.alpha_bar = torch.ones_like(corruption.alpha_bar)  # no noise
    noisy_in = _block_inputs(model, x, corruption)
    clean_in = _block_inputs(model, x, clean)
    for i in range(noise_layer):
        assert torch.equal(noisy_in[i], clean_in[i])
    changed = (noisy_in[noise_layer] != clean_in[noise_layer]).any(-1)
    expected = torch.nn.functional.pad(corruption.noised, (1, 0))  # + cls
    assert torch.equal(changed, expected)


def test_pixel_noise_changes_exactly_the_noised_patches(build_model):
    model = build_model(tiny_backbone(noise_layer='pixel'))
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    corruption = model.sample_corruption(
        x, generator=torch.Generator().manual_seed(0))
    seen = {}
    model.patch_embed.register_forward_pre_hook(
        lambda m, args: seen.__setitem__('img', args[0]))
    model(x, corruption)
    diff = (seen['img'] != x).any(1, keepdim=True).float()
    changed = torch.nn.functional.avg_pool2d(diff, 8).flatten(1) > 0
    assert torch.equal(changed, corruption.noised)


def test_masked_patches_are_replaced_by_the_mask_token(build_model):
    model = build_model(tiny_backbone(noise_ratio=0.))
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    corruption = model.sample_corruption(
        x, generator=torch.Generator().manual_seed(0))
    seen = {}
    model.layers[0].register_forward_pre_hook(
        lambda m, args: seen.__setitem__('h', args[0]))
    model(x, corruption)
    pos = model.pos_embed[0, 1:]
    tokens = seen['h'][0, 1:] - pos
    masked = corruption.mask[0]
    assert torch.allclose(tokens[masked],
                          model.mask_token[0].expand(int(masked.sum()), -1))
    assert not torch.allclose(tokens[~masked][0], model.mask_token[0, 0])


def test_time_embed_is_the_only_other_extra(build_model):
    model = build_model(tiny_backbone(time_embed=True))
    extras = {k for k in model.state_dict() if k.startswith('time_embed')}
    assert extras and all(k.startswith('time_embed.') for k in extras)
    x = torch.randn(2, 3, 32, 32)
    out = model(x, model.sample_corruption(x))
    out.tokens.sum().backward()
    assert model.time_embed[0].weight.grad is not None


@pytest.mark.parametrize('kw, word', [
    (dict(noise_layer=4), 'noise_layer'),
    (dict(noise_layer=-1), 'noise_layer'),
    (dict(noise_layer='feature'), 'noise_layer'),
    (dict(mask_ratio=1.2), 'mask_ratio'),
    (dict(noise_ratio=1.0), 'noise_ratio'),
    (dict(t_range=(0., 1.5)), 't_range'),
    (dict(mask_unit=24), 'mask_unit'),
])
def test_backbone_validation_names_the_value(kw, word):
    with pytest.raises(ValueError, match=word):
        MODELS.build(tiny_backbone(**kw))
