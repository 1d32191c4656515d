"""BEiT's block-wise masking, drawn on the model side and vectorised over samples.

DTM (like BEiT v2, whose code it builds on) masks ``num_masking_patches`` of
the patches (75 of 196) in rectangular blocks. BEiT's ``MaskingGenerator``
(mmpretrain's ``BEiTMaskGenerator`` transform) proposes blocks one at a time:
area ``~ U[min_num_patches, budget]``, log-uniform aspect ratio in
``[min_aspect, 1 / min_aspect]``, uniform position, kept if it adds between 1
and ``budget`` new patches. Here every round proposes one block for every
sample at once (a loop over rounds, none over samples or patches), with the
same proposal distribution. BEiT gives up after 10 failed proposals in a row
and may mask fewer patches; here the last few missing patches are taken next to
the mask instead (the unmasked patches with the most masked neighbours), so
every sample has exactly ``num_masking_patches`` and the masks stack into one
tensor. Drawing on the model side also makes the mask reproducible like the
rest of the corruption: the generator is seeded from the Runner's seed and
iteration, and the mask of the whole global batch is drawn on every rank.
"""
import math
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.dist import get_dist_info
from torch import Tensor

from .corruption import Corruption, step_seed

# Mixed into ``step_seed()`` so the mask draws are not the other draws.
BLOCK_MASK_SEED_SALT = 0xB10C_3A5C


class BlockwiseMaskSampler:
    """Draws BEiT-style block-wise masks; see the module docstring.

    Args:
        num_masking_patches (int): Patches masked per sample. Defaults to 75.
        min_num_patches (int): Smallest block area. Defaults to 16.
        max_num_patches (int, optional): Largest block area; defaults to
            ``num_masking_patches``.
        min_aspect (float): Smallest block aspect ratio (the largest is its
            inverse). Defaults to 0.3.
        num_rounds (int): Block proposals per sample before the top-up.
            Defaults to 24.
    """

    def __init__(self,
                 num_masking_patches: int = 75,
                 min_num_patches: int = 16,
                 max_num_patches: Optional[int] = None,
                 min_aspect: float = 0.3,
                 num_rounds: int = 24) -> None:
        for name, value in (('num_masking_patches', num_masking_patches),
                            ('min_num_patches', min_num_patches),
                            ('num_rounds', num_rounds)):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f'{name} must be an integer >= 1, got '
                                 f'{value!r}')
        if not 0 < min_aspect <= 1:
            raise ValueError(f'min_aspect must be in (0, 1], got '
                             f'{min_aspect!r}')
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        self.max_num_patches = max_num_patches or num_masking_patches
        self.log_aspect = (math.log(min_aspect), -math.log(min_aspect))
        self.num_rounds = num_rounds

    def __call__(self,
                 batch_size: int,
                 patch_resolution: Tuple[int, int],
                 device: Union[str, torch.device] = 'cpu',
                 generator: Optional[torch.Generator] = None) -> Tensor:
        """Draw the masks of a batch.

        Args:
            batch_size (int): The number of samples on this rank.
            patch_resolution (Tuple[int, int]): The patch grid ``(h, w)``.
            device (str | torch.device): Where to put the mask.
            generator (torch.Generator, optional): Use this generator for the
                local batch alone. By default one seeded from the Runner's
                seed and iteration, for the whole global batch.

        Returns:
            Tensor: ``(B, h * w)`` bool, True for masked patches, exactly
            ``num_masking_patches`` per sample.
        """
        h, w = patch_resolution
        if self.num_masking_patches >= h * w:
            raise ValueError(
                f'num_masking_patches={self.num_masking_patches} must be '
                f'smaller than the {h}x{w}={h * w} patches of the image.')
        rank, world_size = 0, 1
        if generator is None:
            rank, world_size = get_dist_info()
            generator = torch.Generator(device).manual_seed(
                step_seed() ^ BLOCK_MASK_SEED_SALT)
        total = batch_size * world_size

        def rand(*shape: int) -> Tensor:
            return torch.rand(shape, generator=generator, device=device)

        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        mask = torch.zeros(total, h, w, dtype=torch.bool, device=device)
        for _ in range(self.num_rounds):
            budget = self.num_masking_patches - mask.sum((1, 2))
            max_area = budget.clamp(max=self.max_num_patches)
            area = self.min_num_patches + (max_area -
                                           self.min_num_patches) * rand(total)
            lo, hi = self.log_aspect
            aspect = torch.exp(lo + (hi - lo) * rand(total))
            bh = torch.round(torch.sqrt(area * aspect)).long()
            bw = torch.round(torch.sqrt(area / aspect)).long()
            top = (rand(total) * (h - bh + 1).clamp(min=1)).long()
            left = (rand(total) * (w - bw + 1).clamp(min=1)).long()
            block = ((rows >= top.view(-1, 1, 1)) &
                     (rows < (top + bh).view(-1, 1, 1)) &
                     (cols >= left.view(-1, 1, 1)) &
                     (cols < (left + bw).view(-1, 1, 1)))
            new = block & ~mask
            num_new = new.sum((1, 2))
            accept = (bh < h) & (bw < w) & (num_new > 0) & (num_new <= budget)
            mask |= new & accept.view(-1, 1, 1)
        mask = self._top_up(mask, rand(total, h, w))
        return mask.flatten(1)[rank::world_size]

    def _top_up(self, mask: Tensor, noise: Tensor) -> Tensor:
        """Mask the missing patches where they have the most masked
        neighbours (ties broken by ``noise``)."""
        missing = self.num_masking_patches - mask.sum((1, 2))
        neighbours = F.conv2d(
            mask[:, None].float(),
            torch.tensor([[0., 1., 0.], [1., 0., 1.], [0., 1., 0.]],
                         device=mask.device).view(1, 1, 3, 3),
            padding=1)[:, 0]
        score = (neighbours + noise).masked_fill(mask, -1.).flatten(1)
        rank = score.argsort(1, descending=True).argsort(1)
        return mask | (rank < missing[:, None]).view_as(mask)


def mask_only_corruption(mask: Tensor, noise_channels: int) -> Corruption:
    """A :class:`Corruption` with the mask ``mask`` and no noise.

    Args:
        mask (Tensor): ``(B, N)`` bool, the same number of True per row.
        noise_channels (int): The width ``eps`` would have.

    Returns:
        Corruption: ``M = mask``, ``S`` empty.
    """
    B, N = mask.shape
    num_masked = int(mask[0].sum())
    masked_index = (~mask).to(torch.uint8).argsort(dim=1, stable=True)
    empty = torch.zeros(B, 0, dtype=torch.long, device=mask.device)
    return Corruption(
        mask=mask,
        noised=torch.zeros_like(mask),
        masked_index=masked_index[:, :num_masked],
        noised_index=empty,
        t=torch.zeros(B, device=mask.device),
        alpha_bar=torch.ones(B, device=mask.device),
        eps=torch.zeros(B, 0, noise_channels, device=mask.device))
