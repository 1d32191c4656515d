"""Images per second of a pre-training config's data pipeline, and whether
the data loader can keep up with the training step.

ImageNet is not needed: the config's ``train_pipeline`` runs on the real
photographs that ship with scikit-image (``EmbeddedPhotos``), which are
larger than the average ImageNet image, so decoding costs at least as much;
or on those photographs re-encoded as ImageNet-like JPEGs
(:func:`write_jpeg_photos`), which both data paths read alike: the CPU path
(decode, crop and resize in the workers) and the device-decode path
(``noisemim/datasets/device_decode.py``: the workers read bytes, the device
decodes, see :func:`device_decode_throughput`).
"""
import math
import os
import os.path as osp
import statistics
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import FUNCTIONS, DefaultScope
from mmpretrain.registry import DATASETS, MODELS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: The device-decode data path's settings (pipeline, preprocessor).
DEVICE_DECODE_DATASET = osp.join(
    ROOT, 'configs/_base_/datasets/imagenet_bs512_noisemim_device-decode.py')
#: ImageNet's average training image is ~400 x 350 px.
JPEG_SIZE = (500, 375)


def write_jpeg_photos(folder: str, count: int = 16,
                      size: Sequence[int] = JPEG_SIZE,
                      quality: int = 90) -> List[str]:
    """scikit-image's photographs as ImageNet-like JPEG files.

    Args:
        folder (str): Where to write them.
        count (int): Files to write (the photographs are reused, each
            cropped differently). Defaults to 16.
        size (Sequence[int]): ``(width, height)``. Defaults to 500 x 375.
        quality (int): JPEG quality (4:2:0 chroma, as most of ImageNet).

    Returns:
        List[str]: The files' paths.
    """
    from PIL import Image

    from noisemim.datasets.embedded_photos import EmbeddedPhotos, PHOTOS
    root = EmbeddedPhotos.data_dir()
    names = [n for n in PHOTOS if osp.exists(osp.join(root, n))]
    if not names or count < 1:
        raise ValueError(f'write_jpeg_photos needs count >= 1 and '
                         f'photographs in {root}, got count={count}')
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i in range(count):
        image = Image.open(osp.join(root, names[i % len(names)]))
        image = image.convert('RGB')
        w, h = image.size
        shift = (i // len(names)) * 7 % max(1, min(w, h) // 4)
        image = image.crop((shift, shift, w, h)).resize(tuple(size),
                                                        Image.BICUBIC)
        path = osp.join(folder, f'photo_{i:04d}.JPEG')
        image.save(path, quality=quality, subsampling=2)
        paths.append(path)
    return paths


class _Files:
    """Image files through a pipeline, as a dataset's ``__getitem__``."""

    def __init__(self, files: Sequence[str], transforms: Compose) -> None:
        self.files, self.transforms = list(files), transforms

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        return self.transforms(dict(img_path=self.files[i], sample_idx=i))


def pipeline_throughput(cfg: Config, num_images: int = 64,
                        batch_size: int = 8,
                        files: Optional[Sequence[str]] = None) -> float:
    """Run the config's train pipeline and collate in this process.

    Args:
        cfg (Config): A pre-training config with ``train_dataloader`` (its
            ``dataset.pipeline`` and ``collate_fn``).
        num_images (int): Images to load. Defaults to 64.
        batch_size (int): Images per collated batch. Defaults to 8.
        files (Sequence[str], optional): Image files to read (e.g.
            :func:`write_jpeg_photos`); by default ``EmbeddedPhotos``.

    Returns:
        float: Images per second of one worker process (the data loader
        runs ``num_workers`` of them in parallel).
    """
    loader = cfg.train_dataloader
    pipeline = loader.dataset.pipeline
    collate_type = loader.get('collate_fn', {}).get('type', 'default_collate')
    scope = cfg.get('default_scope', 'mmpretrain')
    with DefaultScope.overwrite_default_scope(scope):
        collate = FUNCTIONS.get(collate_type)
        if collate is None:
            raise ValueError(f'collate_fn {collate_type!r} is not registered')
        if files is None:
            dataset = DATASETS.build(
                dict(type='EmbeddedPhotos', repeat=1, pipeline=pipeline))
        else:
            dataset = _Files(files, Compose(pipeline))
    dataset[0]  # warm-up: imports, first decode
    start = time.perf_counter()
    for first in range(0, num_images, batch_size):
        collate([
            dataset[i % len(dataset)]
            for i in range(first, min(first + batch_size, num_images))
        ])
    return num_images / (time.perf_counter() - start)


def device_decode_throughput(files: Sequence[str], device: str = 'cpu',
                             batch_size: int = 64, repeats: int = 3,
                             cfg_path: str = DEVICE_DECODE_DATASET) -> float:
    """Images/s of the device-decode path's device side: decode, crop,
    resize, flip and normalise a batch (``DeviceDecodeDataPreprocessor``).

    On CUDA this is nvJPEG (its host part in this process); on a CPU it is
    torchvision's CPU decoder, a stand-in that says nothing of a GPU's rate.

    Args:
        files (Sequence[str]): JPEG files (repeated to fill the batch).
        device (str): Where to decode. Defaults to ``'cpu'``.
        batch_size (int): Images per batch. Defaults to 64.
        repeats (int): Timed batches after one warm-up. Defaults to 3.
        cfg_path (str): The device-decode dataset config.

    Returns:
        float: Images per second.
    """
    cfg = Config.fromfile(cfg_path)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        transforms = Compose(cfg.train_dataloader.dataset.pipeline)
        collate = FUNCTIONS.get(cfg.train_dataloader.collate_fn.type)
        batch = collate([
            transforms(dict(img_path=files[i % len(files)], sample_idx=i))
            for i in range(batch_size)])
        preprocessor = MODELS.build(cfg.data_preprocessor).to(device)
    cuda = torch.device(device).type == 'cuda'
    seconds = []
    for _ in range(repeats + 1):  # the first is a warm-up
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        preprocessor(batch, True)
        if cuda:
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return batch_size / statistics.median(seconds[1:])


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


def data_paths(cfg: Config, num_images: int, device: str,
               folder: str) -> List[dict]:
    """Each data path's images/s per worker, and the device side's rate.

    Args:
        cfg (Config): The pre-training config (its CPU pipeline).
        num_images (int): Images through each pipeline.
        device (str): Where the device-decode path decodes (``'cpu'``: the
            CPU decoder stands in for nvJPEG).
        folder (str): Where to write the JPEG files.

    Returns:
        List[dict]: Per path: ``path``, ``files``, ``per_worker``,
        ``num_workers`` (its config's), ``device_side`` (images/s of the
        device's share, or None where the workers do everything).
    """
    files = write_jpeg_photos(folder, count=8)
    device_cfg = Config.fromfile(DEVICE_DECODE_DATASET)
    workers = cfg.train_dataloader.get('num_workers', 0)
    jpegs = f'JPEGs {JPEG_SIZE[0]}x{JPEG_SIZE[1]}'
    return [
        dict(path='cpu decode (config train_pipeline)',
             files='EmbeddedPhotos', num_workers=workers, device_side=None,
             per_worker=pipeline_throughput(cfg, num_images)),
        dict(path='cpu decode (config train_pipeline)', files=jpegs,
             num_workers=workers, device_side=None,
             per_worker=pipeline_throughput(cfg, num_images, files=files)),
        dict(path='device decode (workers read bytes)', files=jpegs,
             num_workers=device_cfg.train_dataloader.num_workers,
             per_worker=pipeline_throughput(device_cfg, num_images,
                                            files=files),
             device_side=device_decode_throughput(
                 files, device, batch_size=min(64, max(num_images, 1)))),
    ]
