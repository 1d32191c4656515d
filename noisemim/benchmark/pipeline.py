"""Images per second of a pre-training config's data pipeline.

ImageNet is not needed: the config's ``train_pipeline`` runs on the real
photographs that ship with scikit-image (``EmbeddedPhotos``), which are
larger than the average ImageNet image, so decoding costs at least as much.
"""
import time

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
