"""The three pre-training models of the benchmark, at one architecture.

* **NoiseMIM**: the model of the given NoiseMIM config, unchanged.
* **SimMIM-style ViT**: mmpretrain's ``SimMIM`` algorithm, ``SimMIMLinearDecoder``
  and ``SimMIMHead`` (L1 on the masked pixels) over a mask-token ViT. mmpretrain
  has SimMIM only for Swin; its mask-token ViT is ``MaskFeatViT``, which returns
  all tokens, so :class:`SimMIMMaskTokenViT` only reshapes its patch tokens into
  the feature map that ``SimMIMLinearDecoder`` takes. Its encoder does the same
  work as NoiseMIM's (every token, mask token, same blocks) with no noise and no
  disruption loss, and none of its code is ours, so NoiseMIM cannot be made to
  look fast by a slow baseline. Its mask comes from mmpretrain's
  ``SimMIMMaskGenerator``'s settings (same ratio and mask unit), drawn inside
  the timed step on the step's device (:class:`BlockMaskDraw`), as NoiseMIM's
  and MAE's masks are: every model's mask draw is timed alike.
* **MAE**: mmpretrain's own MAE config (``mae_vit-base-p16``: 75 % masking,
  8-block 512-d decoder), with the encoder set to the same architecture.
"""
import copy
import math
import os.path as osp
from typing import Dict, NamedTuple, Optional, Tuple

import mmpretrain
import torch
from mmengine.config import Config
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.selfsup.maskfeat import MaskFeatViT
from mmpretrain.registry import MODELS
from torch import Tensor

NOISEMIM_NAME = 'NoiseMIM'
SIMMIM_NAME = 'SimMIM-style ViT'
MAE_NAME = 'MAE'
MAE_CONFIG = 'mae/mae_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'


@MODELS.register_module()
class SimMIMMaskTokenViT(MaskFeatViT):
    """mmpretrain's mask-token ViT, returning SimMIM's patch feature map.

    Args:
        **kwargs: As ``MaskFeatViT``.
    """

    def forward(self, x: Tensor,
                mask: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """Encode images, with masked patches replaced by the mask token.

        Args:
            x (Tensor): ``(B, C, H, W)`` images.
            mask (Tensor, optional): ``(B, h, w)`` patch mask; None encodes
                clean images as ``VisionTransformer`` does.

        Returns:
            Tuple[Tensor]: ``(B, D, h, w)`` final normalised patch tokens.
        """
        if mask is None:
            return super().forward(x, None)
        tokens = super().forward(x, mask.flatten(1))
        B, _, D = tokens.shape
        h, w = self.patch_resolution
        patches = tokens[:, self.num_extra_tokens:]
        return (patches.transpose(1, 2).reshape(B, D, h, w), )


class BlockMaskDraw:
    """``SimMIMMaskGenerator``'s random block mask, for a batch on a device.

    The same distribution as mmpretrain's transform: per sample, exactly
    ``ceil(ratio * units)`` of the ``(input_size / mask_patch_size)**2`` mask
    units, a uniformly random subset, each unit repeated over its
    ``(mask_patch_size / model_patch_size)**2`` patches. Drawn with torch on
    the given device (one ``rand``/``argsort``) instead of numpy per sample.

    Args:
        input_size (int): Image side.
        mask_patch_size (int): Side of one mask unit.
        model_patch_size (int): The encoder's patch size.
        mask_ratio (float): Share of the units masked.
    """

    def __init__(self, input_size: int = 192, mask_patch_size: int = 32,
                 model_patch_size: int = 4, mask_ratio: float = 0.6) -> None:
        if input_size % mask_patch_size or mask_patch_size % model_patch_size:
            raise ValueError(
                f'input_size {input_size} must be a multiple of '
                f'mask_patch_size {mask_patch_size}, and that of '
                f'model_patch_size {model_patch_size}')
        self.rand_size = input_size // mask_patch_size
        self.scale = mask_patch_size // model_patch_size
        self.token_count = self.rand_size**2
        self.mask_count = int(math.ceil(self.token_count * mask_ratio))

    def __call__(self, batch_size: int, device: torch.device) -> Tensor:
        """``(batch_size, h, w)`` int64 masks (1: masked), on ``device``."""
        order = torch.rand(batch_size, self.token_count,
                           device=device).argsort(1)
        mask = torch.zeros(batch_size, self.token_count, dtype=torch.long,
                           device=device)
        mask.scatter_(1, order[:, :self.mask_count], 1)
        mask = mask.view(batch_size, self.rand_size, self.rand_size)
        return mask.repeat_interleave(self.scale, 1).repeat_interleave(
            self.scale, 2)


def block_mask_draw(generator: dict) -> BlockMaskDraw:
    """A :class:`BlockMaskDraw` from a ``SimMIMMaskGenerator`` config.

    Args:
        generator (dict): ``dict(type='SimMIMMaskGenerator', ...)``.

    Returns:
        BlockMaskDraw: The same mask distribution, drawn per batch.
    """
    settings = dict(generator)
    kind = settings.pop('type', None)
    if kind != 'SimMIMMaskGenerator':
        raise ValueError(f"mask_generator must be a SimMIMMaskGenerator "
                         f"config, got type {kind!r}")
    return BlockMaskDraw(**settings)


class ModelSpec(NamedTuple):
    """One model of the benchmark.

    Attributes:
        model (dict): Its mmpretrain model config.
        mask_generator (dict | None): The ``SimMIMMaskGenerator`` config of
            the model's mask (drawn per batch by :class:`BlockMaskDraw`), or
            None.
    """
    model: dict
    mask_generator: Optional[dict]


def embed_dims_of(arch) -> int:
    """The token width of a ``VisionTransformer`` ``arch`` (name or dict)."""
    if isinstance(arch, str):
        return VisionTransformer.arch_zoo[arch.lower()]['embed_dims']
    return arch['embed_dims']


def benchmark_models(cfg: Config,
                     mae_neck: Optional[dict] = None) -> Dict[str, ModelSpec]:
    """NoiseMIM, SimMIM-style and MAE models at the NoiseMIM config's encoder.

    Args:
        cfg (Config): A NoiseMIM pre-training config.
        mae_neck (dict, optional): Overrides of MAE's decoder
            (``MAEPretrainDecoder``), e.g. a smaller one for a tiny encoder.
            By default it is mmpretrain's (8 blocks, 512-d).

    Returns:
        Dict[str, ModelSpec]: Keyed by :data:`NOISEMIM_NAME`,
        :data:`SIMMIM_NAME` and :data:`MAE_NAME`, with the config's
        ``data_preprocessor`` set on each.
    """
    noisemim = copy.deepcopy(cfg.model.to_dict())
    backbone = noisemim['backbone']
    arch, img, p = backbone['arch'], backbone['img_size'], backbone[
        'patch_size']
    dims = embed_dims_of(arch)
    encoder = dict(arch=copy.deepcopy(arch), img_size=img, patch_size=p)

    simmim = dict(
        type='SimMIM',
        backbone=dict(type='SimMIMMaskTokenViT', **encoder),
        neck=dict(type='SimMIMLinearDecoder', in_channels=dims,
                  encoder_stride=p),
        head=dict(
            type='SimMIMHead',
            patch_size=p,
            loss=dict(type='PixelReconstructionLoss', criterion='L1',
                      channel=3)))
    mask_generator = dict(
        type='SimMIMMaskGenerator',
        input_size=img,
        mask_patch_size=backbone.get('mask_unit', 32),
        model_patch_size=p,
        mask_ratio=backbone.get('mask_ratio', 0.6))

    mae_cfg = Config.fromfile(
        osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs',
                 MAE_CONFIG))
    mae = mae_cfg.model.to_dict()
    mae['backbone'].update(copy.deepcopy(encoder))
    mae['neck'].update(
        patch_size=p, embed_dim=dims, num_patches=(img // p)**2)
    mae['neck'].update(mae_neck or {})
    mae['head'].update(patch_size=p)

    preprocessor = cfg.get('data_preprocessor')
    specs = {
        NOISEMIM_NAME: ModelSpec(noisemim, None),
        SIMMIM_NAME: ModelSpec(simmim, mask_generator),
        MAE_NAME: ModelSpec(mae, None),
    }
    for spec in specs.values():
        if preprocessor is not None:
            spec.model.setdefault('data_preprocessor',
                                  copy.deepcopy(preprocessor.to_dict()))
    return specs
