"""NABirds (Van Horn et al., CVPR 2015) in its official on-disk format.

mmpretrain has no NABirds class; this one reads the files of the official
release, which follow CUB-200-2011's layout but with string image ids and
class ids that are not contiguous (555 leaf classes of a 1011-node
hierarchy)::

    nabirds/
    ├── images/<dir>/<name>.jpg
    ├── images.txt              # <image_id> <path under images/>
    ├── image_class_labels.txt  # <image_id> <class_id>
    ├── train_test_split.txt    # <image_id> <1 = train, 0 = test>
    └── classes.txt             # <class_id> <class name with spaces>
"""
import os.path as osp
from typing import Dict, List

from mmengine import list_from_file
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

SPLITS = ('train', 'test')
FILES = ('images.txt', 'image_class_labels.txt', 'train_test_split.txt',
         'classes.txt')


def read_pairs(path: str) -> Dict[str, str]:
    """Read ``<id> <value...>`` lines into ``{id: value}``.

    Args:
        path (str): A NABirds annotation file.

    Returns:
        dict: The value after the first space of each non-empty line, by id.

    Raises:
        ValueError: A line has no value, or an id repeats.
    """
    pairs = {}
    for number, line in enumerate(list_from_file(path), 1):
        if not line.strip():
            continue
        key, _, value = line.strip().partition(' ')
        if not value or key in pairs:
            problem = 'has no value' if not value else f'repeats id {key!r}'
            raise ValueError(f'{path}:{number} {problem}: {line!r}')
        pairs[key] = value.strip()
    return pairs


@DATASETS.register_module()
class NABirds(BaseDataset):
    """The NABirds dataset: 48,562 photographs of 555 North American bird
    categories (23,929 train / 24,633 test).

    Labels are the indices of the class ids that occur in
    ``image_class_labels.txt``, in ascending id order, so that both splits
    share them.

    Args:
        data_root (str): The ``nabirds`` folder (see the module docstring).
        split (str): ``'train'`` or ``'test'``. Defaults to ``'train'``.
        **kwargs: Passed to mmpretrain's ``BaseDataset`` (``pipeline``, ...).
    """

    def __init__(self, data_root: str, split: str = 'train', **kwargs) -> None:
        if split not in SPLITS:
            raise ValueError(f'NABirds split must be one of {SPLITS}, got '
                             f'{split!r}')
        for name in FILES:
            if not osp.isfile(osp.join(data_root, name)):
                raise FileNotFoundError(
                    f'NABirds: {osp.join(data_root, name)!r} does not exist; '
                    'data_root must hold the official release '
                    f'({", ".join(FILES)} and images/).')
        self.split = split
        kwargs.setdefault('test_mode', split == 'test')
        super().__init__(
            ann_file='images.txt',
            data_root=data_root,
            data_prefix='images',
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the official files into ``img_path``/``gt_label`` records.

        Returns:
            List[dict]: One record per image of the split.
        """
        root = self.data_root
        images = read_pairs(self.ann_file)
        labels = read_pairs(osp.join(root, 'image_class_labels.txt'))
        is_train = read_pairs(osp.join(root, 'train_test_split.txt'))
        names = read_pairs(osp.join(root, 'classes.txt'))
        for name, table in (('image_class_labels.txt', labels),
                            ('train_test_split.txt', is_train)):
            if table.keys() != images.keys():
                diff = sorted(set(images) ^ set(table))[:5]
                raise ValueError(f'NABirds: {name} and images.txt list '
                                 f'different image ids, e.g. {diff}')
        class_ids = sorted({int(c) for c in labels.values()})
        unnamed = [c for c in class_ids if str(c) not in names]
        if unnamed:
            raise ValueError(f'NABirds: class ids {unnamed[:5]} of '
                             'image_class_labels.txt are not in classes.txt')
        index = {c: i for i, c in enumerate(class_ids)}
        if self._metainfo.get('classes') is None:
            self._metainfo['classes'] = tuple(names[str(c)] for c in class_ids)
        keep = '1' if self.split == 'train' else '0'
        return [
            dict(
                img_path=osp.join(self.img_prefix, images[image_id]),
                gt_label=index[int(labels[image_id])])
            for image_id in images if is_train[image_id] == keep
        ]

    def extra_repr(self) -> List[str]:
        """The extra repr information of the dataset."""
        return [f'Root of dataset: \t{self.data_root}',
                f'Split: \t{self.split}']
