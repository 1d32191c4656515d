"""The batch sweep of ``make gpu-check``: its search on CPU, with a fake memory
limit (a step that raises torch's own out-of-memory error above it) and with
real training steps of a tiny model."""
import pytest
import torch
from conftest import tiny_noisemim

from noisemim.benchmark.batch_sweep import (TrainingStep, is_out_of_memory,
                                            sweep_batch_sizes)


def limited_step(limit: int, calls: list):
    """A step that runs out of memory above ``limit`` images."""

    def step(batch_size: int) -> None:
        calls.append(batch_size)
        if batch_size > limit:
            raise torch.cuda.OutOfMemoryError(
                f'CUDA out of memory. Tried to allocate {batch_size} MiB')

    return step


def test_doubles_until_out_of_memory_then_bisects():
    calls, lines = [], []
    result = sweep_batch_sizes(limited_step(40, calls), 'cpu', start=8,
                               max_batch=4096, bisect_steps=2,
                               log=lines.append)
    assert calls == [8, 16, 32, 64, 48, 40]
    assert result.largest == 40 and result.first_failing == 48
    assert [t.fits for t in result.trials] == [True] * 3 + [False] * 2 + [True]
    assert result.summary() == ('largest batch that fits: 40; 48 ran out of '
                                'memory')
    assert lines[3].startswith('batch 64: out of memory')


def test_stops_at_the_maximum_and_when_nothing_fits():
    calls = []
    result = sweep_batch_sizes(limited_step(10**6, calls), 'cpu', start=3,
                               max_batch=20, log=None)
    assert calls == [3, 6, 12, 20] and result.largest == 20
    assert 'stopped at its maximum, 20' in result.summary()
    result = sweep_batch_sizes(limited_step(4, []), 'cpu', start=8,
                               bisect_steps=3, log=None)
    assert result.largest is None and len(result.trials) == 1
    assert result.summary() == 'no batch fits: 8 images ran out of memory'


def test_other_errors_propagate_and_settings_are_checked():
    def broken(batch_size: int) -> None:
        raise RuntimeError('shape mismatch')

    with pytest.raises(RuntimeError, match='shape mismatch'):
        sweep_batch_sizes(broken, 'cpu', log=None)
    assert is_out_of_memory(RuntimeError('CUDA error: out of memory'))
    assert not is_out_of_memory(ValueError('out of memory'))
    with pytest.raises(ValueError, match='start must be an integer >= 1, '
                       'got 0'):
        sweep_batch_sizes(broken, 'cpu', start=0)
    with pytest.raises(ValueError, match='max_batch must be >= start=8, '
                       'got 4'):
        sweep_batch_sizes(broken, 'cpu', max_batch=4)


def test_real_training_steps_of_a_tiny_model():
    step = TrainingStep(tiny_noisemim(), img_size=32, device='cpu', steps=1)
    before = step.model.backbone.layers[0].attn.qkv.weight.detach().clone()
    result = sweep_batch_sizes(step, 'cpu', start=2, max_batch=4, log=None)
    assert [t.batch_size for t in result.trials] == [2, 4]
    assert result.largest == 4 and result.first_failing is None
    after = step.model.backbone.layers[0].attn.qkv.weight
    assert not torch.equal(before, after)  # the optimizer stepped
    with pytest.raises(ValueError, match="amp='bf16' needs a CUDA device"):
        TrainingStep(tiny_noisemim(), img_size=32, device='cpu', amp='bf16')
