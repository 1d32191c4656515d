"""Count the bad samples that ``SkipBadSamples`` skipped, in the main process.

The wrapper runs in dataloader workers (other processes) and on every rank;
each sample it serves in place of bad ones carries their records in its data
sample's metainfo. This hook reads them from each batch, gathers them over
the ranks, logs them, keeps the run's list in the message hub (so checkpoints
hold it and ``--resume`` restores it) and stops the run past ``max_bad``.
"""
from typing import Any, List, Optional

import torch
from mmengine.config import Config
from mmengine.dist import all_gather_object, all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.structures import BaseDataElement

from noisemim.datasets.skip_bad_samples import (SKIPPED_KEY,
                                                find_skip_bad_samples,
                                                too_many)

from .host_values import read_due

#: The message hub's runtime-info key holding the run's bad-sample records.
INFO_KEY = 'bad_samples'


def skipped_in(data_batch: Any) -> List[str]:
    """The bad-sample records carried by a collated batch.

    Args:
        data_batch (Any): A batch as the dataloader gives it.

    Returns:
        List[str]: ``'file: error'`` for each sample skipped to fill it.
    """
    samples = None
    if isinstance(data_batch, dict):
        samples = data_batch.get('data_samples')
    if isinstance(samples, BaseDataElement):
        samples = [samples]
    found = []
    for sample in samples or []:
        if isinstance(sample, BaseDataElement):
            found += list(sample.metainfo.get(SKIPPED_KEY, ()))
    return found


@HOOKS.register_module()
class BadSampleCountHook(Hook):
    """Log, keep and limit the run's count of skipped bad samples.

    Idle unless the training dataset holds a ``SkipBadSamples`` wrapper with
    ``max_bad > 0`` (or ``max_bad`` is given).

    Args:
        max_bad (int, optional): Stop past this many bad samples in the whole
            run (all ranks, across resumes). Defaults to the smallest
            positive ``max_bad`` of the wrappers found.
    """

    priority = 'NORMAL'  # before CheckpointHook (VERY_LOW) saves the count

    def __init__(self, max_bad: Optional[int] = None) -> None:
        if max_bad is not None and (not isinstance(max_bad, int)
                                    or max_bad < 0):
            raise ValueError(
                f'BadSampleCountHook: max_bad must be an int >= 0 or None, '
                f'got {max_bad!r}')
        self.max_bad_arg = max_bad
        self.max_bad = max_bad
        self.active = False
        self.records: List[str] = []
        self._kept: List[List[str]] = []  # per iteration not yet gathered

    def before_train(self, runner) -> None:
        """Find the wrappers and restore the count of a resumed run.

        Args:
            runner (Runner): The runner.
        """
        wrappers = find_skip_bad_samples(runner.train_dataloader.dataset)
        limits = [w.max_bad for w in wrappers if w.max_bad > 0]
        self.max_bad = (self.max_bad_arg if self.max_bad_arg is not None else
                        (min(limits) if limits else None))
        # max_bad=0 wrappers skip nothing: they raise, naming the file.
        self.active = bool(limits) or self.max_bad_arg is not None
        self.records = list(runner.message_hub.get_info(INFO_KEY, None) or [])
        self._kept = []
        if self.active and self.records:
            runner.logger.warning(
                f'{len(self.records)} bad sample(s) were skipped before this '
                f'resume (max_bad={self.max_bad}): ' + '; '.join(self.records))

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        """Add the batch's skipped samples (all ranks) to the run's count.

        With one process the records are on the host: counted at once. With
        several, each rank keeps its records until an iteration whose logged
        values are read anyway (:func:`~.host_values.read_due`), then one
        all-reduce counts them and, if any, they are gathered: no host-device
        synchronisation in the other iterations.

        Args:
            runner (Runner): The runner.
            batch_idx (int): The batch's index.
            data_batch (Any): The batch.
            outputs (dict, optional): The model's outputs (unused).

        Raises:
            TooManyBadSamplesError: More than ``max_bad`` in the run.
        """
        if not self.active:
            return
        new = skipped_in(data_batch)
        if get_world_size() == 1:
            self._add(runner, runner.iter + 1, new)
            return
        self._kept.append(new)
        if not read_due(runner, batch_idx):
            return
        kept, self._kept = self._kept, []
        count = torch.tensor([sum(len(k) for k in kept)], dtype=torch.int64)
        all_reduce(count)
        if int(count.item()) == 0:
            return
        ranks = all_gather_object(kept)  # [rank][iteration] -> records
        first = runner.iter + 2 - len(kept)
        for i in range(len(kept)):
            self._add(runner, first + i, [r for rank in ranks for r in rank[i]])

    def _add(self, runner, iteration: int, new: List[str]) -> None:
        """Count, keep and log one iteration's records; stop past max_bad."""
        if not new:
            return
        self.records += new
        runner.message_hub.update_info(INFO_KEY, list(self.records))
        runner.logger.warning(
            f'Iteration {iteration}: skipped {len(new)} bad sample(s) '
            f'(run total {len(self.records)}, max_bad={self.max_bad}): ' +
            '; '.join(new))
        if self.max_bad is not None and len(self.records) > self.max_bad:
            raise too_many(self.records, self.max_bad)

    def after_train(self, runner) -> None:
        """Log the run's total.

        Args:
            runner (Runner): The runner.
        """
        if self.active:
            runner.logger.info(
                f'Bad samples skipped in this run: {len(self.records)} '
                f'(max_bad={self.max_bad}).')


def _uses_skip_bad_samples(dataset: Any) -> bool:
    """Whether a dataset config (or one it wraps) is ``SkipBadSamples``."""
    if not isinstance(dataset, dict):
        return False
    if str(dataset.get('type', '')).split('.')[-1] == 'SkipBadSamples':
        return True
    return _uses_skip_bad_samples(dataset.get('dataset')) or any(
        _uses_skip_bad_samples(d) for d in dataset.get('datasets') or [])


def guard_bad_samples(cfg: Config) -> None:
    """Make a bad training sample either skipped and counted, or an error
    that names its file.

    A config whose training dataset uses ``SkipBadSamples`` gets
    :class:`BadSampleCountHook` if it lacks it. Any other training dataset is
    wrapped in ``SkipBadSamples(max_bad=0)``: nothing is skipped, and the
    first bad sample stops the run with an error naming its file (mmcv's own
    message for an undecodable image is an ``assert``, gone under
    ``python -O``).

    Args:
        cfg (Config): The run's config (changed in place).
    """
    loader = cfg.get('train_dataloader')
    if not loader or not isinstance(loader.get('dataset'), dict):
        return
    if not _uses_skip_bad_samples(loader['dataset']):
        loader['dataset'] = dict(
            type='SkipBadSamples', max_bad=0, dataset=loader['dataset'])
        return
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(
            str(h.get('type', '')).split('.')[-1] == 'BadSampleCountHook'
            for h in hooks if isinstance(h, dict)):
        hooks.append(dict(type='BadSampleCountHook'))
    cfg.custom_hooks = hooks
