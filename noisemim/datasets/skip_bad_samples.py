"""A dataset wrapper that skips samples which fail to load or transform.

ImageNet-1K holds a few broken files, and a long run should not end at one.
``dict(type='SkipBadSamples', dataset=..., max_bad=100)`` wraps any dataset
config (mmpretrain, mmdet, mmseg): a sample whose loading or transform raises
is logged with its file and error, counted, and replaced by the next index
that loads (a deterministic choice, so exact resume still holds). Past
``max_bad`` bad samples the run stops with the list of files. ``max_bad=0``
skips nothing: the first bad sample stops the run with an error naming its
file (also under ``python -O``, where mmcv's ``assert img is not None`` is
gone and the original error is an ``AttributeError`` on ``None``).

Dataloader workers are separate processes, so the wrapper does not keep the
run's count itself: each sample served in place of bad ones carries their
records in its data sample's metainfo (``skipped_bad_samples``), and
:class:`noisemim.engine.hooks.BadSampleCountHook` adds them up in the main
process (across ranks), logs them, stops past ``max_bad`` and keeps the list
in the message hub, which checkpoints save and ``--resume`` restores.
"""
import copy
import logging
from typing import Any, Iterator, List, Optional, Sequence

from mmengine.logging import print_log
from mmengine.registry import DATASETS as ROOT_DATASETS
from mmengine.structures import BaseDataElement

#: The metainfo key of a data sample that lists the bad samples it replaced.
SKIPPED_KEY = 'skipped_bad_samples'


class BadSampleError(RuntimeError):
    """A sample could not be loaded (its file and the error are named)."""


class TooManyBadSamplesError(RuntimeError):
    """More bad samples than ``max_bad`` (the files are listed)."""


def too_many(records: Sequence[str], max_bad: int) -> TooManyBadSamplesError:
    """The error for more than ``max_bad`` bad samples.

    Args:
        records (Sequence[str]): ``'file: error'`` for each bad sample.
        max_bad (int): The limit.

    Returns:
        TooManyBadSamplesError: Listing every record.
    """
    return TooManyBadSamplesError(
        f'{len(records)} bad samples, more than max_bad={max_bad}; stopping. '
        'The data may be damaged or the pipeline wrong:\n' +
        '\n'.join(f'  {r}' for r in records))


@ROOT_DATASETS.register_module()
class SkipBadSamples:
    """Serve the next loadable sample in place of one that fails.

    Registered in mmengine's root ``DATASETS``, so mmpretrain, mmdet and
    mmseg configs all find it. Other attributes (``metainfo``,
    ``get_data_info``, ``get_cat_ids``, ...) are the wrapped dataset's.

    The wrapped dataset is given either nested, ``dataset=dict(type=...,
    ...)``, or flat, ``dataset_type=...`` with its arguments beside
    ``max_bad``. The flat form keeps a config's keys where they were
    (``train_dataloader.dataset.data_root``, ``.pipeline``), so overrides and
    configs that inherit them work unchanged.

    Args:
        dataset (dict | Dataset, optional): The dataset or its config.
        max_bad (int): How many bad samples a run may skip before it stops.
            0 skips none (the first one stops the run, naming the file).
            Defaults to 100.
        dataset_type (str, optional): The wrapped dataset's type (flat form).
        **kwargs: The wrapped dataset's arguments (flat form).
    """

    def __init__(self,
                 dataset: Any = None,
                 max_bad: int = 100,
                 dataset_type: Optional[str] = None,
                 **kwargs) -> None:
        if isinstance(max_bad, bool) or not isinstance(max_bad, int) or (
                max_bad < 0):
            raise ValueError(
                f'SkipBadSamples: max_bad must be an int >= 0, got {max_bad!r}')
        if (dataset is None) == (dataset_type is None):
            raise ValueError(
                'SkipBadSamples: give either dataset=dict(type=...) or '
                f'dataset_type=... with its arguments; got dataset={dataset!r}'
                f', dataset_type={dataset_type!r}')
        if dataset is None:
            dataset = dict(type=dataset_type, **kwargs)
        elif kwargs:
            raise TypeError(
                f'SkipBadSamples: unexpected arguments {sorted(kwargs)} beside '
                'dataset=...; put them in the dataset config, or use the '
                'flat form with dataset_type=...')
        if isinstance(dataset, dict):
            from mmpretrain.registry import DATASETS
            dataset = DATASETS.build(dataset)
        if not (hasattr(dataset, '__getitem__') and hasattr(dataset, '__len__')):
            raise TypeError(
                'SkipBadSamples: dataset must be a dataset config (dict) or a '
                f'dataset, got {type(dataset).__name__}')
        self.dataset = dataset
        self.max_bad = max_bad
        #: ``'file: error'`` of each bad sample met in this process.
        self.bad: List[str] = []

    #: The wrapper's own attributes; others are the wrapped dataset's.
    _OWN = ('dataset', 'max_bad', 'bad')

    def __getattr__(self, name: str) -> Any:
        if name == 'dataset' or name.startswith('__'):
            raise AttributeError(name)  # not set yet (e.g. while unpickling)
        return getattr(self.dataset, name)

    def __setattr__(self, name: str, value: Any) -> None:
        # e.g. mmdet's PipelineSwitchHook sets ``dataset.pipeline``
        if name in self._OWN or 'dataset' not in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            setattr(self.dataset, name, value)

    @property
    def metainfo(self) -> dict:
        """The wrapped dataset's metainfo."""
        return copy.deepcopy(getattr(self.dataset, 'metainfo', {}))

    def full_init(self) -> None:
        """Fully initialise the wrapped dataset (mmengine's lazy init)."""
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()

    def __len__(self) -> int:
        return len(self.dataset)

    def describe(self, index: int) -> str:
        """The file(s) behind sample ``index``, for messages.

        Args:
            index (int): The sample.

        Returns:
            str: Its ``*_path`` / ``filename`` entries, else ``'sample N'``.
        """
        try:
            info = self.dataset.get_data_info(index)
        except Exception:  # noqa: BLE001 (a description must not fail)
            info = {}
        files = [
            str(value) for key, value in sorted(info.items())
            if (key.endswith('_path') or key == 'filename')
            and isinstance(value, str)
        ] if isinstance(info, dict) else []
        return ', '.join(files) or f'sample {index}'

    def __getitem__(self, index: int) -> Any:
        skipped: List[str] = []
        for step in self._indices(index):
            try:
                sample = self.dataset[step]
            except Exception as error:  # noqa: BLE001 (any load failure)
                where = self.describe(step)
                record = f'{where}: {type(error).__name__}: {error}'
                if self.max_bad == 0:
                    raise BadSampleError(
                        f'Cannot load sample {step} ({where}): '
                        f'{type(error).__name__}: {error}. Wrap the dataset '
                        "in dict(type='SkipBadSamples', max_bad=N) to skip "
                        'bad samples.') from error
                self.bad.append(record)
                print_log(
                    f'SkipBadSamples: skipping a bad sample, {record}',
                    logger='current',
                    level=logging.WARNING)
                if len(self.bad) > self.max_bad:
                    raise too_many(self.bad, self.max_bad) from error
                skipped.append(record)
                continue
            return self._mark(sample, skipped)
        raise too_many(self.bad, self.max_bad)

    def _indices(self, index: int) -> Iterator[int]:
        """``index``, then the next ones (wrapping), once each."""
        size = len(self.dataset)
        for step in range(size):
            yield (index + step) % size

    @staticmethod
    def _mark(sample: Any, skipped: List[str]) -> Any:
        """Record the skipped samples in the served sample's metainfo."""
        if not skipped:
            return sample
        target = sample.get('data_samples') if isinstance(sample,
                                                          dict) else None
        if isinstance(target, BaseDataElement):
            target.set_metainfo({SKIPPED_KEY: list(skipped)})
        else:
            print_log(
                'SkipBadSamples: this sample has no data_samples element to '
                'carry the count to the main process; the skipped samples '
                'are only logged.',
                logger='current',
                level=logging.WARNING)
        return sample


def find_skip_bad_samples(dataset: Any) -> List[SkipBadSamples]:
    """The :class:`SkipBadSamples` wrappers in a dataset (and its wrapped
    ``dataset`` / ``datasets``).

    Args:
        dataset: A built dataset.

    Returns:
        List[SkipBadSamples]: The wrappers found.
    """
    found, todo, seen = [], [dataset], set()
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, SkipBadSamples):
            found.append(item)
        todo.append(item.__dict__.get('dataset') if hasattr(
            item, '__dict__') else None)
        todo += list(getattr(item, 'datasets', None) or [])
    return found
