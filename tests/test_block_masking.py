"""DTM's block masking draws without host-device synchronisation.

On CUDA ``torch.cuda.set_sync_debug_mode`` would catch a sync; on CPU every
operator goes through a ``TorchDispatchMode``, where a read of a tensor's value
into Python (``.item()``, ``int(t)``, ``bool(t)``) is
``aten._local_scalar_dense`` and a tensor built from Python data
(``torch.tensor([...])``, a host-to-device copy on a GPU) is
``aten.lift_fresh``.
"""
import uuid
from collections import Counter

import pytest
import torch
from mmengine.logging import MessageHub
from torch.utils._python_dispatch import TorchDispatchMode

from noisemim.models.block_masking import (BlockwiseMaskSampler,
                                           mask_only_corruption)

SYNC_OPS = ('aten._local_scalar_dense.default', )
FROM_PYTHON_OPS = ('aten.lift_fresh.default', )


class OpLog(TorchDispatchMode):
    """Counts the aten operators that run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def in_runner(iteration: int, seed: int = 7) -> None:
    """The runtime info a Runner publishes: seed and iteration."""
    hub = MessageHub.get_instance(f'block-mask-{uuid.uuid4().hex}')
    hub.update_info('seed', seed)
    hub.update_info('iter', iteration)


@pytest.fixture(autouse=True)
def blank_hub_after():
    """Later tests in this process see no Runner's seed and iteration."""
    yield
    MessageHub.get_instance(f'block-mask-done-{uuid.uuid4().hex}')


def draw(sampler: BlockwiseMaskSampler, batch: int = 8):
    mask = sampler(batch, (14, 14))
    return mask_only_corruption(mask, 32, sampler.num_masking_patches)


def test_masking_reads_nothing_back_and_builds_buffers_once():
    in_runner(iteration=3)  # keys from the Runner, no generator to read
    sampler = BlockwiseMaskSampler()
    with OpLog() as first:
        draw(sampler)
    with OpLog() as second:
        corruption = draw(sampler)
    for log in (first, second):
        assert not [op for op in SYNC_OPS if log.ops[op]], log.ops
    # The index grids and the neighbour kernel are made on the first call.
    assert not [op for op in FROM_PYTHON_OPS if second.ops[op]], second.ops
    assert corruption.masked_index.shape == (8, 75)
    assert (corruption.mask.sum(1) == 75).all()
    masked = corruption.mask.gather(1, corruption.masked_index)
    assert masked.all()
    # A loop over rounds only: the operator count does not grow with the
    # batch.
    with OpLog() as larger:
        draw(sampler, batch=64)
    assert sum(larger.ops.values()) == sum(second.ops.values())


def test_masks_follow_the_sampler_settings():
    sampler = BlockwiseMaskSampler(num_masking_patches=40, min_num_patches=8,
                                   num_rounds=12)
    masks = sampler(32, (10, 12), generator=torch.Generator().manual_seed(3))
    assert masks.shape == (32, 120) and (masks.sum(1) == 40).all()
    again = sampler(32, (10, 12), generator=torch.Generator().manual_seed(3))
    assert torch.equal(masks, again)


def test_mask_only_corruption_needs_the_known_count():
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :6] = True
    corruption = mask_only_corruption(mask, 8, 6)
    assert corruption.masked_index.tolist() == [list(range(6))] * 2
    assert corruption.eps.shape == (2, 0, 8) and corruption.num_noised == 0
    with pytest.raises(ValueError, match=r'num_masked must be an integer in '
                       r'\[0, 16\], got 17'):
        mask_only_corruption(mask, 8, 17)


def test_a_samples_mask_does_not_depend_on_its_batch():
    """Keyed per sample (the corruption's SampleRandom): iteration k with 8
    images = iterations 2k and 2k + 1 with 4 (an accumulation split, or the
    stream positions of 2 processes)."""
    sampler = BlockwiseMaskSampler()
    in_runner(iteration=5)
    whole = sampler(8, (14, 14))
    in_runner(iteration=10)
    first = sampler(4, (14, 14))
    in_runner(iteration=11)
    second = sampler(4, (14, 14))
    assert torch.equal(whole, torch.cat([first, second]))
    assert len({tuple(m.tolist()) for m in whole}) == 8
