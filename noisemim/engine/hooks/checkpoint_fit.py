"""Refuse a ``load_from`` / ``--resume`` checkpoint that does not fit the model.

mmengine's Runner loads both with ``strict=False`` and only logs a warning when
keys are missing, unexpected or of another shape, then trains on: a resumed run
can silently start from random weights. This hook compares the checkpoint's
state dict with the model's before mmengine loads it.
"""
import re
from typing import List, Sequence, Tuple

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's state dict does not fit the model."""


def state_dict_mismatch(
        model_state: dict,
        checkpoint_state: dict) -> Tuple[List[str], List[str], List[str]]:
    """Compare two state dicts.

    Args:
        model_state (dict): The model's ``state_dict()``.
        checkpoint_state (dict): The checkpoint's state dict.

    Returns:
        Tuple[List[str], List[str], List[str]]: The missing keys, the
        unexpected keys, and ``'key: checkpoint (shape) vs model (shape)'`` for
        each key whose shape differs.
    """
    missing = sorted(set(model_state) - set(checkpoint_state))
    unexpected = sorted(set(checkpoint_state) - set(model_state))
    shapes = []
    for key in sorted(set(model_state) & set(checkpoint_state)):
        want = tuple(getattr(model_state[key], 'shape', ()))
        got = tuple(getattr(checkpoint_state[key], 'shape', ()))
        if want != got:
            shapes.append(f'{key}: checkpoint {got} vs model {want}')
    return missing, unexpected, shapes


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """Raise (or warn) when a checkpoint loaded by the Runner does not fit.

    Args:
        strict (bool): Raise :class:`CheckpointMismatchError`; else only log
            the mismatch as an error. Defaults to True.
        revise_keys (Sequence[Tuple[str, str]]): Regex substitutions applied
            to the checkpoint's keys first, as mmengine does. Defaults to
            stripping ``module.``.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 strict: bool = True,
                 revise_keys: Sequence[Tuple[str, str]] = (
                     (r'^module\.', ''), )) -> None:
        self.strict = strict
        self.revise_keys = [tuple(pair) for pair in revise_keys]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Compare the checkpoint with the model before it is loaded.

        Args:
            runner (Runner): The runner.
            checkpoint (dict): The loaded checkpoint.

        Raises:
            CheckpointMismatchError: ``strict`` and the checkpoint does not
                fit.
        """
        state = checkpoint.get('state_dict', checkpoint)
        for pattern, repl in self.revise_keys:
            state = {re.sub(pattern, repl, k): v for k, v in state.items()}
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        missing, unexpected, shapes = state_dict_mismatch(
            model.state_dict(), state)
        if not (missing or unexpected or shapes):
            return
        message = (
            f'The checkpoint does not fit the model '
            f'{type(model).__name__}:\n  missing keys ({len(missing)}): '
            f'{missing}\n  unexpected keys ({len(unexpected)}): '
            f'{unexpected}\n  shape mismatches ({len(shapes)}): {shapes}\n'
            'Check that the config matches the one the checkpoint was '
            'trained with (or use init_cfg=dict(type="Pretrained", ...) to '
            'initialise a part of the model).')
        runner.logger.error(message)
        if self.strict:
            raise CheckpointMismatchError(message)
