"""scikit-learn's handwritten digits as an mmpretrain classification dataset.

The probe of the study's first protocol (kept as the ``digits`` preset). Raw
pixels already give about 96 % linear accuracy on it, so it cannot show what
pre-training adds; see ``photo_crops.py`` for the default task.
"""
from typing import List, Optional

import numpy as np
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

SPLITS = ('train', 'val')


@DATASETS.register_module()
class SklearnDigits(BaseDataset):
    """The 1,797 labelled 8x8 digits of ``sklearn.datasets.load_digits``.

    The 17 grey levels are scaled to ``[0, 255]`` and repeated over 3
    channels (``uint8`` in ``img``, as after ``LoadImageFromFile``); the
    pipeline resizes them. The split is stratified with a fixed seed;
    ``digit_index`` is a sample's index in ``load_digits``.

    Args:
        split (str): ``'train'`` or ``'val'``.
        val_ratio (float): Share of the digits in ``'val'``. Defaults to 0.5.
        num (int, optional): Use the first ``num`` digits only (the set
            cycles through the classes, so they stay balanced).
        seed (int): Seed of the split. Defaults to 0.
        pipeline (Sequence[dict]): The data pipeline.
        **kwargs: Passed to ``BaseDataset``.
    """

    def __init__(self,
                 split: str = 'train',
                 val_ratio: float = 0.5,
                 num: Optional[int] = None,
                 seed: int = 0,
                 pipeline=(),
                 **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(f'SklearnDigits split must be one of {SPLITS}, '
                             f'got {split!r}')
        if not 0 < val_ratio < 1:
            raise ValueError(f'val_ratio must be in (0, 1), got {val_ratio!r}')
        if num is not None and num < 20:
            raise ValueError(f'num must be at least 20 digits, got {num!r}')
        self.split, self.val_ratio, self.num, self.seed = (split, val_ratio,
                                                           num, seed)
        super().__init__(
            ann_file='',
            metainfo=dict(classes=[str(i) for i in range(10)]),
            pipeline=pipeline,
            serialize_data=False,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
        digits = load_digits()
        images, labels = digits.images, digits.target
        if self.num is not None:
            images, labels = images[:self.num], labels[:self.num]
        train, val = train_test_split(
            np.arange(len(labels)),
            test_size=self.val_ratio,
            stratify=labels,
            random_state=self.seed)
        index = train if self.split == 'train' else val
        grey = np.round(images * (255. / 16.)).astype(np.uint8)
        return [
            dict(
                img=np.repeat(grey[i][..., None], 3, axis=2),
                img_shape=(8, 8),
                ori_shape=(8, 8),
                gt_label=int(labels[i]),
                digit_index=int(i),
                sample_idx=n) for n, i in enumerate(sorted(index))
        ]
