"""DiffMAE's decoder: MAE's decoder that sees the noised masked patches."""
from typing import Optional

import torch
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.registry import MODELS
from torch import Tensor, nn

from ..backbones.noisemim_vit import timestep_embedding


@MODELS.register_module()
class DiffMAEDecoder(MAEPretrainDecoder):
    """MAE's decoder whose masked positions carry the noised patches.

    DiffMAE conditions the decoder on a noised version of the masked patches
    at level ``t`` and lets it predict their clean pixels. This is DiffMAE's
    "joint" decoder on top of mmpretrain's ``MAEPretrainDecoder``: a masked
    position starts as ``mask_token + embed(noised patch) + embed(t)`` instead
    of the mask token alone, and self-attention over all tokens lets it attend
    to the encoder's output for the visible patches. Everything else (blocks,
    fixed sin-cos positions, norm, pixel predictor) is MAE's.

    Args:
        patch_size (int): Patch side in pixels. Defaults to 16.
        in_chans (int): Image channels. Defaults to 3.
        time_embed (bool): Add a learned embedding of ``t`` to the noised
            tokens. Defaults to True.
        **kwargs: The other arguments of ``MAEPretrainDecoder``.
    """

    def __init__(self,
                 patch_size: int = 16,
                 in_chans: int = 3,
                 time_embed: bool = True,
                 **kwargs) -> None:
        super().__init__(patch_size=patch_size, in_chans=in_chans, **kwargs)
        width = self.decoder_embed.out_features
        self.noised_patch_embed = nn.Linear(patch_size**2 * in_chans, width)
        self.time_embed = nn.Sequential(
            nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, width)) if time_embed else None

    def embed_noised(self, noised_patches: Tensor,
                     t: Optional[Tensor]) -> Tensor:
        """The decoder tokens of noised patches.

        Args:
            noised_patches (Tensor): ``(B, N, P)`` noised flattened patches.
            t (Tensor, optional): ``(B,)`` their noise levels (needed with
                ``time_embed``).

        Returns:
            Tensor: ``(B, N, D)`` ``mask_token + embed(patch) [+ embed(t)]``.
        """
        tokens = self.mask_token + self.noised_patch_embed(noised_patches)
        if self.time_embed is not None:
            if t is None:
                raise ValueError('DiffMAEDecoder(time_embed=True) needs t.')
            width = tokens.shape[-1]
            tokens = tokens + self.time_embed(
                timestep_embedding(t, width).to(tokens.dtype))[:, None]
        return tokens

    def forward(self,
                x: Tensor,
                ids_restore: Tensor,
                noised_patches: Tensor,
                t: Optional[Tensor] = None) -> Tensor:
        """Predict the pixels of every patch.

        Args:
            x (Tensor): ``(B, 1 + n_visible, C)`` encoder output (class token
                first), as ``MAEViT`` returns it.
            ids_restore (Tensor): ``(B, N)`` from ``MAEViT``'s masking;
                positions with ``ids_restore >= n_visible`` are masked.
            noised_patches (Tensor): ``(B, N, P)`` noised patches in image
                order; only the masked ones are used.
            t (Tensor, optional): ``(B,)`` noise levels.

        Returns:
            Tensor: ``(B, N, P)`` predicted clean pixels.
        """
        x = self.decoder_embed(x)
        B, N = ids_restore.shape
        num_visible = x.shape[1] - 1
        # The visible tokens back in image order (as MAE's decoder does).
        visible = torch.cat(
            [x[:, 1:], x.new_zeros(B, N - num_visible, x.shape[2])], dim=1)
        visible = visible.gather(
            1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        masked = (ids_restore >= num_visible).unsqueeze(-1)
        tokens = torch.where(masked, self.embed_noised(noised_patches, t),
                             visible)
        x = torch.cat([x[:, :1], tokens], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]
