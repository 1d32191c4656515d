"""ViTDet's simple feature pyramid (Li et al., 2022), registered in mmdet
as ``NoiseMIMSimpleFPN``.

Pip's mmdet 3.3.0 has no ``projects/ViTDet``; this follows its ``SimpleFPN``
(and detectron2's ``SimpleFeaturePyramid``): the single stride-``s`` map of a
plain ViT becomes maps of strides ``s/4, s/2, s, 2s`` by two transposed
convolutions, one, none and a max-pool; each then gets a 1x1 lateral and a
3x3 output convolution (with a norm, no top-down path), and extra levels are
stride-2 max-pools of the last one (Mask R-CNN's P6).

The name carries the ``NoiseMIM`` prefix because mmdet's own
``projects/ViTDet`` registers ``SimpleFPN`` in the same registry: both can be
imported in one process.
"""
from typing import List, Sequence, Tuple, Union

import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn


@MODELS.register_module()
class NoiseMIMSimpleFPN(BaseModule):
    """Simple feature pyramid for a plain (non-hierarchical) backbone.

    Args:
        backbone_channel (int): Channels ``C`` of the backbone's feature map.
        in_channels (Sequence[int]): Channels of the four rescaled maps; must
            be ``[C // 4, C // 2, C, C]`` (what the rescaling produces).
        out_channels (int): Channels of every output level.
        num_outs (int): Output levels, at least 4; levels after the fourth
            are max-pools of the previous one.
        conv_cfg (dict, optional): Convolution config of the convolutions.
        norm_cfg (dict, optional): Norm config, e.g. ``dict(type='mmpretrain.LN2d')``
            (mmpretrain's ``LayerNorm2d``).
        act_cfg (dict, optional): Activation after the convolutions
            (ViTDet: none).
        init_cfg (dict | list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 backbone_channel: int,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int,
                 conv_cfg: dict = None,
                 norm_cfg: dict = None,
                 act_cfg: dict = None,
                 init_cfg: Union[dict, List[dict]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        c = backbone_channel
        expected = [c // 4, c // 2, c, c]
        if list(in_channels) != expected:
            raise ValueError(
                f'NoiseMIMSimpleFPN: in_channels must be {expected} for '
                f'backbone_channel={c}, got {list(in_channels)}')
        if num_outs < len(expected):
            raise ValueError(f'NoiseMIMSimpleFPN: num_outs must be >= 4, got '
                             f'{num_outs}')
        self.backbone_channel = c
        self.in_channels = expected
        self.out_channels = out_channels
        self.num_outs = num_outs

        # Strides s/4, s/2, s and 2s of the backbone's stride s.
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, 2),
            build_norm_layer(norm_cfg, c // 2)[1]
            if norm_cfg else nn.Identity(), nn.GELU(),
            nn.ConvTranspose2d(c // 2, c // 4, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 2, 2))
        self.fpn3 = nn.Sequential(nn.Identity())
        self.fpn4 = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2))

        conv = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg,
                    inplace=False)
        self.lateral_convs = nn.ModuleList(
            ConvModule(channels, out_channels, 1, **conv)
            for channels in expected)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, **conv)
            for _ in expected)

    def forward(self, inputs: Union[Tensor, Sequence[Tensor]]
                ) -> Tuple[Tensor, ...]:
        """Build the pyramid from the backbone's last feature map.

        Args:
            inputs (Tensor | Sequence[Tensor]): ``(B, C, H, W)``, or a
                backbone's output tuple holding exactly that one map.

        Returns:
            tuple[Tensor]: ``num_outs`` maps of ``out_channels`` channels,
            strides ``s/4, s/2, s, 2s, 4s, ...``.
        """
        if not isinstance(inputs, Tensor):
            if len(inputs) != 1:
                raise ValueError(
                    'NoiseMIMSimpleFPN takes one feature map (set the backbone to '
                    f'output only its last block), got {len(inputs)}')
            inputs = inputs[0]
        if inputs.dim() != 4 or inputs.shape[1] != self.backbone_channel:
            raise ValueError(
                f'NoiseMIMSimpleFPN expects a (B, {self.backbone_channel}, H, W) '
                f'feature map, got shape {tuple(inputs.shape)}')
        scales = (self.fpn1, self.fpn2, self.fpn3, self.fpn4)
        outs = [
            fpn_conv(lateral(scale(inputs))) for scale, lateral, fpn_conv in
            zip(scales, self.lateral_convs, self.fpn_convs)
        ]
        for _ in range(self.num_outs - len(outs)):
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
