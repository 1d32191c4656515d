"""The MaskDiT-style encoder: MAE's ViT with an embedding of the noise level.
"""
from typing import Optional, Tuple, Union

import torch
from mmpretrain.models.selfsup import MAEViT
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from .noisemim_vit import timestep_embedding


@MODELS.register_module()
class MaskDiTViT(MAEViT):
    """``MAEViT`` whose tokens carry a learned embedding of ``t``.

    The embedding is ``mlp(sin-cos(t)) - mlp(sin-cos(0))``, so it vanishes for
    clean images (``t = 0``): with ``t=None`` or ``mask=None`` this is exactly
    ``MAEViT`` (and, unmasked, mmpretrain's ``VisionTransformer``), and
    ``time_embed`` is the only extra parameter, dropped on transfer.

    Args:
        *args, **kwargs: As ``MAEViT``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        width = self.embed_dims
        self.time_embed = nn.Sequential(
            nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def embed_time(self, t: Tensor) -> Tensor:
        """``(B, D)`` embedding of ``(B,)`` noise levels, zero at ``t = 0``."""
        levels = torch.cat([t.float(), t.new_zeros(1).float()])
        emb = self.time_embed(timestep_embedding(levels, self.embed_dims))
        return emb[:-1] - emb[-1:]

    def forward(self,
                x: Tensor,
                mask: Optional[bool] = True,
                t: Optional[Tensor] = None
                ) -> Union[Tuple[Tensor, ...], Tuple[Tensor, Tensor, Tensor]]:
        """Encode the visible patches of (noised) images at levels ``t``.

        Args:
            x (Tensor): ``(B, C, H, W)`` images.
            mask (bool, optional): ``None`` gives the plain ViT forward.
            t (Tensor, optional): ``(B,)`` noise levels of ``x``; None is
                ``MAEViT.forward``.

        Returns:
            As ``MAEViT.forward``: ``(latent, mask, ids_restore)`` when masked.
        """
        if mask is None or t is None:
            return super().forward(x, mask)
        B = x.shape[0]
        x = self.patch_embed(x)[0] + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, self.mask_ratio)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.embed_time(t).to(x.dtype)[:, None]
        for layer in self.layers:
            x = layer(x)
        return self.norm1(x), mask, ids_restore
