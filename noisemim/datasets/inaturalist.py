"""iNaturalist 2017/2018/2019 in the official JSON (COCO-like) format.

mmpretrain has no iNaturalist class; this one reads the official annotation
files, ``{train,val}{year}.json``, each with ``images`` (``id``,
``file_name`` relative to the data root), ``annotations`` (``image_id``,
``category_id``) and ``categories`` (``id``, ``name``)::

    inat2018/
    ├── train2018.json
    ├── val2018.json
    └── train_val2018/<supercategory>/<category>/<name>.jpg

(2017: ``train2017.json``, ``val2017.json`` and ``train_val_images/``.)
"""
import os.path as osp
from typing import List, Optional

from mmengine.fileio import load
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

SPLITS = ('train', 'val')
YEARS = (2017, 2018, 2019)


@DATASETS.register_module()
class INaturalist(BaseDataset):
    """The iNaturalist species classification challenge datasets.

    Labels are the positions of the category ids in ascending order (the
    official ids are already ``0 .. C-1``: 5,089 classes in 2017, 8,142 in
    2018). Every image must have exactly one annotation.

    Args:
        data_root (str): Folder with the JSON files and the image folders.
        split (str): ``'train'`` or ``'val'``. Defaults to ``'train'``.
        year (int): 2017, 2018 or 2019. Defaults to 2018.
        ann_file (str, optional): Annotation file under ``data_root``;
            defaults to ``f'{split}{year}.json'``.
        **kwargs: Passed to mmpretrain's ``BaseDataset`` (``pipeline``, ...).
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 year: int = 2018,
                 ann_file: Optional[str] = None,
                 **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(f'INaturalist split must be one of {SPLITS}, '
                             f'got {split!r}')
        if year not in YEARS:
            raise ValueError(f'INaturalist year must be one of {YEARS}, got '
                             f'{year!r}')
        ann_file = ann_file or f'{split}{year}.json'
        if not osp.isfile(osp.join(data_root, ann_file)):
            raise FileNotFoundError(
                f'INaturalist: {osp.join(data_root, ann_file)!r} does not '
                f'exist; data_root must hold the official {split}{year}.json '
                'and the image folders its file_name entries point to.')
        self.split, self.year = split, year
        kwargs.setdefault('test_mode', split != 'train')
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the JSON into ``img_path``/``gt_label`` records.

        Returns:
            List[dict]: One record per image, in the file's order.
        """
        data = load(self.ann_file)
        for key in ('images', 'annotations', 'categories'):
            if key not in data:
                raise KeyError(f'INaturalist: {self.ann_file!r} has no '
                               f'{key!r} list (found {sorted(data)})')
        categories = sorted(data['categories'], key=lambda c: c['id'])
        index = {c['id']: i for i, c in enumerate(categories)}
        if self._metainfo.get('classes') is None:
            self._metainfo['classes'] = tuple(
                str(c.get('name', c['id'])) for c in categories)
        label_of = {}
        for ann in data['annotations']:
            if ann['category_id'] not in index:
                raise ValueError(
                    f'INaturalist: annotation {ann.get("id")} of '
                    f'{self.ann_file!r} has category_id {ann["category_id"]}, '
                    'which is not in its categories')
            if ann['image_id'] in label_of:
                raise ValueError(f'INaturalist: image {ann["image_id"]} has '
                                 f'more than one annotation in '
                                 f'{self.ann_file!r}')
            label_of[ann['image_id']] = index[ann['category_id']]
        unlabelled = [im['id'] for im in data['images']
                      if im['id'] not in label_of]
        if unlabelled:
            raise ValueError(
                f'INaturalist: {len(unlabelled)} images of {self.ann_file!r} '
                f'have no annotation, e.g. ids {unlabelled[:5]}')
        return [
            dict(img_path=osp.join(self.data_root, im['file_name']),
                 gt_label=label_of[im['id']]) for im in data['images']
        ]

    def extra_repr(self) -> List[str]:
        """The extra repr information of the dataset."""
        return [f'Root of dataset: \t{self.data_root}',
                f'Annotation file: \t{self.ann_file}']
