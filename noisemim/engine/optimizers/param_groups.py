"""Parameter groups merged by identical settings.

mmengine's ``paramwise_cfg`` makes one parameter group per tensor (about 155
for ViT-B, with two distinct settings: weight decay or none). The optimizer
then runs its per-group loop, and its multi-tensor (``foreach``) kernels,
once per tensor. :class:`NoiseMIMOptimWrapperConstructor` builds the groups
as mmengine does and merges those whose optimizer settings are identical:
the same update for every parameter, a few groups.

The merge is order-stable (groups in the order of their first tensor, the
tensors of a group in their order), so the optimizer's state of a run that
saved one group per tensor (before this constructor) is regrouped the same
way on ``--resume`` (:func:`merge_saved_groups`).
"""
from collections import OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn

#: Group keys, besides the optimizer's own settings, that make groups
#: distinct: the scheduler's base lr (a group's lr is scheduled from it).
SCHEDULED_KEYS = ('initial_lr', )


def _hashable(value: Any) -> Any:
    """``value`` as a hashable key (lists and tuples element-wise)."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, torch.Tensor):
        return ('tensor', tuple(value.flatten().tolist()))
    return value


def _settings(group: dict, names: Iterable[str]) -> tuple:
    """The group's values of ``names`` (absent ones as a marker)."""
    return tuple((name, _hashable(group.get(name, '<unset>')))
                 for name in names)


def merge_param_groups(groups: Sequence[dict],
                       names: Iterable[str]) -> List[dict]:
    """Merge the groups whose values of ``names`` are identical.

    Args:
        groups (Sequence[dict]): Parameter groups (``params`` and settings).
        names (Iterable[str]): The settings that make groups distinct (the
            optimizer's hyper-parameters).

    Returns:
        List[dict]: One group per distinct setting, in the order of its first
        group, with its tensors in their order. A key outside ``names`` is
        kept where all the merged groups agree on it, else dropped (as the
        per-tensor ``param_name`` of layer decay).
    """
    names = sorted(set(names) | set(SCHEDULED_KEYS))
    merged: Dict[tuple, dict] = OrderedDict()
    members: Dict[tuple, List[dict]] = OrderedDict()
    for group in groups:
        key = _settings(group, names)
        if key not in merged:
            merged[key] = dict(group, params=[])
            members[key] = []
        merged[key]['params'] += list(group['params'])
        members[key].append(group)
    for key, group in merged.items():
        for extra in set(group) - set(names) - {'params'}:
            if any(_hashable(g.get(extra, '<unset>')) != _hashable(
                    group[extra]) for g in members[key]):
                del group[extra]
    return list(merged.values())


def merge_saved_groups(optimizer: torch.optim.Optimizer,
                       state_dict: dict) -> Optional[dict]:
    """An optimizer ``load_state_dict`` pre-hook: regroup a state saved with
    one group per tensor into the merged groups of ``optimizer``.

    The saved groups are merged by the same rule (their settings include the
    scheduled lr and ``initial_lr``), so the saved tensors line up with the
    current ones, group by group. A state that already has the current
    number of groups, or that does not merge into the current layout, is
    left as it is (torch then loads it, or names the mismatch).

    Args:
        optimizer (Optimizer): The optimizer being loaded (merged groups).
        state_dict (dict): The saved ``optimizer.state_dict()``.

    Returns:
        dict | None: The regrouped state dict, or None to leave it.
    """
    saved = state_dict.get('param_groups', [])
    current = optimizer.param_groups
    if len(saved) == len(current):
        return None
    regrouped = merge_param_groups(saved, optimizer.defaults)
    if [len(g['params']) for g in regrouped] != [
            len(g['params']) for g in current]:
        return None
    print_log(
        f'optimizer state: regrouped {len(saved)} saved parameter groups '
        f'into {len(regrouped)} (groups of identical settings merged)',
        'current')
    return dict(state_dict, param_groups=regrouped)


class MergedParamGroupsMixin:
    """For an ``mmengine`` optimizer wrapper constructor: merge the built
    optimizer's groups of identical settings, and regroup a per-tensor saved
    state on load (:func:`merge_saved_groups`)."""

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optimizer wrapper, then merge its parameter groups.

        Args:
            model (nn.Module): The model.

        Returns:
            OptimWrapper: The wrapper, its optimizer's groups merged.
        """
        wrapper = super().__call__(model)
        optimizer = wrapper.optimizer
        if not isinstance(optimizer, torch.optim.Optimizer):
            return wrapper
        before = len(optimizer.param_groups)
        # The optimizer filled each group's defaults: compare them all.
        optimizer.param_groups = merge_param_groups(optimizer.param_groups,
                                                    optimizer.defaults)
        optimizer.register_load_state_dict_pre_hook(merge_saved_groups)
        print_log(
            f'{type(optimizer).__name__}: {before} parameter groups merged '
            f'into {len(optimizer.param_groups)} of distinct settings',
            'current')
        return wrapper


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class NoiseMIMOptimWrapperConstructor(MergedParamGroupsMixin,
                                      DefaultOptimWrapperConstructor):
    """mmengine's ``DefaultOptimWrapperConstructor`` (``paramwise_cfg`` as
    there), with the parameter groups of identical settings merged.

    It is registered in mmengine's root registry, so configs of every scope
    can name it::

        optim_wrapper = dict(
            optimizer=dict(type='AdamW', lr=1.6e-3, weight_decay=0.05),
            constructor='NoiseMIMOptimWrapperConstructor',
            paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))

    Every parameter gets the setting mmengine gives it; only the number of
    groups changes (ViT-B: 2 instead of about 155). A ``--resume`` from a
    checkpoint saved with one group per tensor regroups its optimizer state
    (:func:`merge_saved_groups`).
    """
