"""The per-iteration hooks read a step's logged values in one transfer.

On a GPU every ``float(t)``/``.item()`` of a device tensor is a host-device
synchronisation. ``SyncLossHook`` stacks the values on their device and copies
them to the host once; ``FiniteLossHook`` and mmengine's ``RuntimeInfoHook``
then read host tensors. On CPU the check is on the operators: one ``stack``,
and no ``aten._local_scalar_dense`` (the per-value read) in the hooks.
"""
import math
from types import SimpleNamespace

import pytest
import torch
from test_block_masking import OpLog

from noisemim.engine.hooks import FiniteLossHook, SyncLossHook
from noisemim.engine.hooks.host_values import host_scalars, stack_scalars


def step_outputs() -> dict:
    return dict(loss=torch.tensor(1.5, dtype=torch.bfloat16),
                loss_mim=torch.tensor(0.75), loss_denoise=torch.tensor(0.5),
                accuracy=0.25, hist=torch.ones(3))


def test_host_scalars_read_every_value_from_one_stack():
    outputs = step_outputs()
    with OpLog() as log:
        values = host_scalars(outputs)
    assert values == dict(loss=1.5, loss_mim=0.75, loss_denoise=0.5,
                          accuracy=0.25)
    assert log.ops['aten.stack.default'] == 1
    assert log.ops['aten._local_scalar_dense.default'] == 0
    keys, stacked = stack_scalars(outputs, ['loss_mim'])
    assert keys == ['loss_mim'] and stacked.dtype == torch.float64
    assert stack_scalars({'hist': torch.ones(3)}) == ([], None)


def test_hooks_leave_host_values_and_read_them_without_item_calls():
    outputs = step_outputs()
    SyncLossHook().after_train_iter(None, 0, outputs=outputs)
    assert all(outputs[k].device.type == 'cpu' and outputs[k].dim() == 0
               for k in ('loss', 'loss_mim', 'loss_denoise', 'accuracy'))
    assert outputs['loss'].item() == 1.5 and outputs['accuracy'].item() == .25
    assert torch.equal(outputs['hist'], torch.ones(3))  # not a scalar: kept
    with OpLog() as log:
        FiniteLossHook().after_train_iter(None, 0, outputs=outputs)
    assert log.ops['aten._local_scalar_dense.default'] == 0, log.ops


def test_finite_loss_hook_still_stops_at_nan(tmp_path):
    errors = []
    runner = SimpleNamespace(
        iter=4, work_dir=str(tmp_path),
        message_hub=SimpleNamespace(get_info=lambda key: None),
        logger=SimpleNamespace(error=errors.append))
    outputs = dict(loss=torch.tensor(math.nan), loss_mim=torch.tensor(1.0))
    with pytest.raises(FloatingPointError, match='iteration 5: loss=nan, '
                       'loss_mim=1.0'):
        FiniteLossHook().after_train_iter(runner, 0, outputs=outputs)
    assert errors and 'No checkpoint was saved' in errors[0]
