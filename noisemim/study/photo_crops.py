"""Which photograph is this crop from? A probe task that needs no download.

Each of scikit-image's photographs is cut into two disjoint regions: the
left part (pre-training and the probe's training crops) and a held-out strip
on the right (the probe's validation crops). A crop is labelled with the
photograph it comes from, so the task is in-domain (the same kind of images
as pre-training) and tests generalisation to unseen parts of each scene.
"""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from ..datasets.embedded_photos import PHOTOS, EmbeddedPhotos

SPLITS = ('pretrain', 'train', 'val')
# The right view of a stereo pair: the same scene as motorcycle_left.png, so
# its crops could not be told apart from the left view's.
DUPLICATE_SCENES = ('motorcycle_right.png', )


def default_photos() -> List[str]:
    """The photographs of :data:`PHOTOS` that this scikit-image has, less the
    duplicate scenes (:data:`DUPLICATE_SCENES`), sorted by name."""
    root = EmbeddedPhotos.data_dir()
    return sorted(n for n in PHOTOS if n not in DUPLICATE_SCENES
                  and osp.exists(osp.join(root, n)))


def split_columns(width: int, holdout: float) -> Tuple[slice, slice]:
    """The columns of the kept (left) and held-out (right) regions.

    Args:
        width (int): Image width in pixels.
        holdout (float): Share of the columns held out, in (0, 1).

    Returns:
        Tuple[slice, slice]: ``(kept, held_out)`` column slices.
    """
    cut = int(round(width * (1 - holdout)))
    return slice(0, cut), slice(cut, width)


@DATASETS.register_module()
class PhotoCrops(BaseDataset):
    """Crops of scikit-image's photographs, labelled by photograph.

    ``split='pretrain'`` yields each photograph's kept region (left
    ``1 - holdout`` of its columns) as one image, for a pre-training pipeline
    with random crops. ``'train'`` and ``'val'`` yield ``num_per_class``
    square crops per photograph, drawn (with a fixed seed) from the kept
    region and from the held-out strip respectively, with the photograph's
    index as ``gt_label`` (and the crop's ``crop_box``, ``(x0, y0, x1,
    y1)`` in the photograph). Images are BGR ``uint8`` arrays in ``img``, as
    ``LoadImageFromFile`` would give them, so a pipeline starts after
    loading (a resize, then ``PackInputs``).

    Args:
        split (str): ``'pretrain'``, ``'train'`` or ``'val'``.
        names (Sequence[str], optional): Photograph file names; defaults to
            :func:`default_photos`.
        holdout (float): Share of each photograph's columns held out for
            ``'val'``. Defaults to 0.3.
        crop_scale (Tuple[float, float]): Range of the crop side as a share
            of the photograph's shorter side (uniform). Defaults to
            ``(0.15, 0.3)``.
        num_per_class (int): Crops per photograph (``'train'``, ``'val'``).
            Defaults to 32.
        repeat (int): How often each region appears per epoch
            (``'pretrain'``). Defaults to 1.
        seed (int): Seed of the crop positions and sizes. ``'train'`` and
            ``'val'`` draw from different streams. Defaults to 0.
        pipeline (Sequence[dict]): The data pipeline.
        **kwargs: Passed to ``BaseDataset``.
    """

    def __init__(self,
                 split: str = 'train',
                 names: Optional[Sequence[str]] = None,
                 holdout: float = 0.3,
                 crop_scale: Tuple[float, float] = (0.15, 0.3),
                 num_per_class: int = 32,
                 repeat: int = 1,
                 seed: int = 0,
                 pipeline: Sequence[dict] = (),
                 **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(f'PhotoCrops split must be one of {SPLITS}, '
                             f'got {split!r}')
        if not 0 < holdout < 1:
            raise ValueError(f'holdout must be in (0, 1), got {holdout!r}')
        low, high = crop_scale
        if not 0 < low <= high <= 1:
            raise ValueError('crop_scale must be (low, high) with '
                             f'0 < low <= high <= 1, got {crop_scale!r}')
        if num_per_class < 1 or repeat < 1:
            raise ValueError('num_per_class and repeat must be >= 1, got '
                             f'{num_per_class!r} and {repeat!r}')
        self.split = split
        self.names = list(names) if names else default_photos()
        self.holdout = holdout
        self.crop_scale = (float(low), float(high))
        self.num_per_class = num_per_class
        self.repeat = repeat
        self.seed = seed
        classes = [osp.splitext(n)[0] for n in self.names]
        super().__init__(
            ann_file='',
            metainfo=dict(classes=classes),
            pipeline=pipeline,
            serialize_data=False,
            **kwargs)

    def _read(self, name: str) -> np.ndarray:
        import mmcv
        path = osp.join(EmbeddedPhotos.data_dir(), name)
        if not osp.exists(path):
            raise FileNotFoundError(
                f'PhotoCrops: {path} not found; install scikit-image '
                '(pip install scikit-image) or pass names= that it has.')
        return mmcv.imread(path, flag='color')  # BGR, like LoadImageFromFile

    def _crops(self, image: np.ndarray, columns: slice,
               rng: np.random.Generator) -> List[Tuple[np.ndarray, tuple]]:
        """``num_per_class`` square crops inside ``columns``, each with its
        box ``(x0, y0, x1, y1)`` in the photograph's pixels."""
        height = image.shape[0]
        width = columns.stop - columns.start
        short = min(image.shape[:2])
        crops = []
        for _ in range(self.num_per_class):
            side = int(round(short * rng.uniform(*self.crop_scale)))
            side = max(1, min(side, height, width))
            top = int(rng.integers(0, height - side + 1))
            left = columns.start + int(rng.integers(0, width - side + 1))
            crops.append((np.ascontiguousarray(
                image[top:top + side, left:left + side]),
                          (left, top, left + side, top + side)))
        return crops

    def load_data_list(self) -> List[dict]:
        data_list = []
        # One stream per split, so 'train' and 'val' crops are independent.
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split)])
        for label, name in enumerate(self.names):
            image = self._read(name)
            kept, held_out = split_columns(image.shape[1], self.holdout)
            if self.split == 'pretrain':
                region = np.ascontiguousarray(image[:, kept])
                data_list += [
                    dict(img=region, img_shape=region.shape[:2],
                         ori_shape=region.shape[:2])
                    for _ in range(self.repeat)
                ]
                continue
            columns = kept if self.split == 'train' else held_out
            for crop, box in self._crops(image, columns, rng):
                data_list.append(
                    dict(img=crop, img_shape=crop.shape[:2],
                         ori_shape=crop.shape[:2], gt_label=label,
                         crop_box=box))
        for i, info in enumerate(data_list):
            info['sample_idx'] = i
        return data_list
