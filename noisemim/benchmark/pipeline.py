"""Images per second of a pre-training config's data pipeline, and whether
the data loader can keep up with the training step.

ImageNet is not needed: the config's ``train_pipeline`` runs on the real
photographs that ship with scikit-image (``EmbeddedPhotos``), which are
larger than the average ImageNet image, so decoding costs at least as much.
"""
import math
import os
import time
from dataclasses import dataclass
from typing import Optional

from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import DefaultScope
from mmpretrain.registry import DATASETS


def pipeline_throughput(cfg: Config, num_images: int = 64,
                        batch_size: int = 8) -> float:
    """Run the config's train pipeline and collate in this process.

    Args:
        cfg (Config): A pre-training config with ``train_dataloader``.
        num_images (int): Images to load. Defaults to 64.
        batch_size (int): Images per collated batch. Defaults to 8.

    Returns:
        float: Images per second of one worker process (the data loader
        runs ``num_workers`` of them in parallel).
    """
    pipeline = cfg.train_dataloader.dataset.pipeline
    scope = cfg.get('default_scope', 'mmpretrain')
    with DefaultScope.overwrite_default_scope(scope):
        dataset = DATASETS.build(
            dict(type='EmbeddedPhotos', repeat=1, pipeline=pipeline))
    dataset[0]  # warm-up: imports, first decode
    start = time.perf_counter()
    for first in range(0, num_images, batch_size):
        default_collate([
            dataset[i % len(dataset)]
            for i in range(first, min(first + batch_size, num_images))
        ])
    return num_images / (time.perf_counter() - start)


@dataclass
class FeedEstimate:
    """Whether ``num_workers`` loader processes keep a training step fed.

    Attributes:
        per_worker (float): Images/s of one worker process.
        num_workers (int): The config's workers per device.
        usable_workers (int): Workers that get a core of their own: at most
            the cores per device minus one (the training process).
        supply (float): ``per_worker * usable_workers``.
        needed (float): Images/s the training step consumes.
        workers_needed (int): Workers (one core each) for ``needed``.
        input_bound (bool): ``supply < needed``: the device waits for data.
    """
    per_worker: float
    num_workers: int
    usable_workers: int
    supply: float
    needed: float
    workers_needed: int
    input_bound: bool

    def verdict(self) -> str:
        """One line for the table."""
        if self.input_bound:
            return (f'INPUT-BOUND: {self.usable_workers} workers x '
                    f'{self.per_worker:.0f} = {self.supply:.0f} images/s < '
                    f'{self.needed:.0f} needed; use >= {self.workers_needed}'
                    ' workers, each with a core')
        return (f'fed: {self.usable_workers} workers x {self.per_worker:.0f} '
                f'= {self.supply:.0f} images/s >= {self.needed:.0f} needed')


def cpus_per_device(num_devices: int = 1) -> int:
    """Cores this process may use, shared by ``num_devices`` devices.

    Args:
        num_devices (int): Devices (GPUs) on this machine that train at once.

    Returns:
        int: Cores per device, at least 1.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, num_devices))


def feed_estimate(per_worker: float,
                  num_workers: int,
                  needed: float,
                  cpus: Optional[int] = None) -> FeedEstimate:
    """Compare the loader's images/s with what the training step consumes.

    Args:
        per_worker (float): Images/s of one worker (see
            :func:`pipeline_throughput`).
        num_workers (int): The config's ``num_workers`` (0: the training
            process loads the data itself, counted as one worker).
        needed (float): Images/s of the training step per device.
        cpus (int, optional): Cores per device; by default unlimited.

    Returns:
        FeedEstimate: The comparison.
    """
    if per_worker <= 0 or needed < 0:
        raise ValueError(f'per_worker must be > 0 and needed >= 0, got '
                         f'{per_worker!r} and {needed!r}')
    usable = max(num_workers, 1)
    if cpus is not None:
        usable = max(1, min(usable, cpus - 1))
    supply = per_worker * usable
    return FeedEstimate(per_worker, num_workers, usable, supply, needed,
                        math.ceil(needed / per_worker), supply < needed)
