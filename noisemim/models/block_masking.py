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
rest of the corruption: its random numbers come from the corruption's
per-sample keys (:class:`~noisemim.models.corruption.SampleRandom`, salted),
so each rank draws only its own rows, and a sample's mask is the same with
any number of processes, any accumulation split and after ``--resume``.
"""
import math
from typing import Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .corruption import Corruption, SampleRandom

# Mixed into the seed of the per-sample keys so that the mask's numbers are
# not the corruption's; one stream per kind of draw.
BLOCK_MASK_SEED_SALT = 0xB10C_3A5C
STREAM_BLOCKS, STREAM_TOP_UP = 1, 2


class BlockwiseMaskSampler:
    """Draws BEiT-style block-wise masks; see the module docstring.

    A draw makes no host-device synchronisation: the counts are known in
    advance, the random numbers of all rounds come from one call, and the
    index grids and the neighbour kernel are built once per device and grid.

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
        # (h, w, device) -> (grid (2, 1), positions (1, 1, max(h, w)),
        # neighbour kernel (1, 1, 3, 3)), built once.
        self._buffers: Dict[Tuple[int, int, str], Tuple[Tensor, ...]] = {}

    def _grid_buffers(self, h: int, w: int,
                      device: torch.device) -> Tuple[Tensor, ...]:
        """The fixed tensors of a ``h x w`` grid on ``device`` (cached)."""
        key = (h, w, str(device))
        if key not in self._buffers:
            self._buffers[key] = (
                torch.tensor([h, w], device=device),
                torch.arange(max(h, w), device=device).view(1, 1, -1),
                torch.tensor([[0., 1., 0.], [1., 0., 1.], [0., 1., 0.]],
                             device=device).view(1, 1, 3, 3))
        return self._buffers[key]

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
            generator (torch.Generator, optional): Seed the draw from this
                generator, for the local batch alone. By default each sample
                is keyed by the Runner's seed and its stream position (see
                :class:`~noisemim.models.corruption.SampleRandom`).

        Returns:
            Tensor: ``(B, h * w)`` bool, True for masked patches, exactly
            ``num_masking_patches`` per sample.
        """
        h, w = patch_resolution
        if self.num_masking_patches >= h * w:
            raise ValueError(
                f'num_masking_patches={self.num_masking_patches} must be '
                f'smaller than the {h}x{w}={h * w} patches of the image.')
        device = torch.device(device)
        random = SampleRandom.for_batch(batch_size, device, generator,
                                        salt=BLOCK_MASK_SEED_SALT)
        total = batch_size
        grid, positions, _ = self._grid_buffers(h, w, device)

        # All rounds' uniforms at once (area, aspect, top, left), and what
        # does not depend on the mask: area = min + (max_area - min) * u0 is
        # max_area * u0 + min * (1 - u0); block height and width per
        # sqrt(area) are (sqrt(aspect), 1 / sqrt(aspect)).
        u = random.uniform(STREAM_BLOCKS, self.num_rounds,
                           4).permute(1, 2, 0)  # (R, 4, total)
        area_base = self.min_num_patches * (1 - u[:, 0])
        lo, hi = self.log_aspect
        half_log = (lo + (hi - lo) * u[:, 1]) / 2
        shape = torch.stack((half_log, -half_log), -1).exp()  # (R, total, 2)
        offset = u[:, 2:].transpose(1, 2)  # (R, total, 2): top, left
        mask = torch.zeros(total, h, w, dtype=torch.bool, device=device)
        budget = torch.full((total, ),
                            self.num_masking_patches,
                            device=device)
        for r in range(self.num_rounds):
            area = torch.addcmul(area_base[r],
                                 budget.clamp(max=self.max_num_patches),
                                 u[r, 0])
            size = (area.sqrt()[:, None] * shape[r]).round().long()
            start = (offset[r] * (grid + 1 - size).clamp(min=1)).long()
            # inside[b, 0] marks the block's rows, inside[b, 1] its columns.
            inside = ((positions >= start[..., None]) &
                      (positions < (start + size)[..., None]))
            block = inside[:, 0, :h, None] & inside[:, 1, None, :w]
            new = block > mask  # in the block, not yet masked
            num_new = new.sum((1, 2))
            # (A block that adds nothing changes nothing, accepted or not.)
            accept = (size < grid).all(1) & (num_new <= budget)
            mask |= new & accept[:, None, None]
            budget = budget - num_new * accept
        mask = self._top_up(mask, budget,
                            random.uniform(STREAM_TOP_UP, h, w))
        return mask.flatten(1)

    def _top_up(self, mask: Tensor, missing: Tensor, noise: Tensor) -> Tensor:
        """Mask the ``missing`` patches of each sample where they have the
        most masked neighbours (ties broken by ``noise``)."""
        h, w = mask.shape[1:]
        kernel = self._grid_buffers(h, w, mask.device)[2]
        neighbours = F.conv2d(mask[:, None].float(), kernel, padding=1)[:, 0]
        score = (neighbours + noise).masked_fill(mask, -1.).flatten(1)
        rank = score.argsort(1, descending=True).argsort(1)
        return mask | (rank < missing[:, None]).view_as(mask)


def mask_only_corruption(mask: Tensor, noise_channels: int,
                         num_masked: int) -> Corruption:
    """A :class:`Corruption` with the mask ``mask`` and no noise.

    Args:
        mask (Tensor): ``(B, N)`` bool, ``num_masked`` True per row.
        noise_channels (int): The width ``eps`` would have.
        num_masked (int): The masked patches per row (known to the caller,
            so that nothing is read back from the device).

    Returns:
        Corruption: ``M = mask``, ``S`` empty.
    """
    B, N = mask.shape
    if not (isinstance(num_masked, int) and 0 <= num_masked <= N):
        raise ValueError(f'num_masked must be an integer in [0, {N}], got '
                         f'{num_masked!r}')
    device = mask.device
    masked_index = (~mask).to(torch.uint8).argsort(dim=1, stable=True)
    return Corruption(
        mask=mask,
        noised=torch.zeros_like(mask),
        masked_index=masked_index[:, :num_masked],
        noised_index=torch.zeros(B, 0, dtype=torch.long, device=device),
        t=torch.zeros(B, device=device),
        alpha_bar=torch.ones(B, device=device),
        eps=torch.zeros(B, 0, noise_channels, device=device))
