"""Pre-training images from any folder: ImageNet layout or a plain folder.

mmpretrain's ``ImageNet`` needs ``meta/{split}.txt`` or exactly its 1000
class folders, and ``CustomDataset`` takes no ``split``; :class:`NoiseMIMImageFolder`
takes whatever folder of images a user has and serves the images without
labels (pre-training needs none). It is mmpretrain's ``CustomDataset``
(``with_label=False``: a recursive, case-insensitive scan), with the folder
chosen for the layout and webp among the extensions.
"""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

from mmengine.fileio import list_from_file
from mmengine.logging import MMLogger
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS

#: Image extensions read (compared in lower case: .JPEG, .Png, ... count).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.webp', '.bmp', '.ppm', '.pgm',
                    '.tif', '.tiff')
#: The folder forms :class:`NoiseMIMImageFolder` reads, for error messages.
LAYOUTS = (
    'an ImageNet-layout folder, <root>/train/<class>/*.JPEG (with or '
    'without <root>/meta/train.txt, any number of classes), or any folder of '
    'images in any nesting, <root>/**/*.{jpg,jpeg,png,webp,bmp} (class '
    'folders or not; no labels needed)')


def resolve_layout(data_root: str,
                   split: str = 'train') -> Tuple[str, str, str]:
    """Where the images of ``data_root`` are and how they are listed.

    Args:
        data_root (str): The folder.
        split (str): The sub-folder of the ImageNet layout.

    Returns:
        Tuple[str, str, str]: ``(data_prefix, ann_file, description)``:
        ``data_prefix`` relative to ``data_root`` (``split`` when
        ``<root>/<split>`` is a folder, else ``''``), ``ann_file`` the
        ImageNet list ``meta/<split>.txt`` when it exists (else ``''``: the
        folder is scanned), and a description for the log.

    Raises:
        FileNotFoundError: ``data_root`` is not a folder.
    """
    if not data_root or not osp.isdir(data_root):
        raise FileNotFoundError(
            f'image folder {osp.abspath(data_root or ".")!r} does not exist; '
            f'give {LAYOUTS}.')
    if split and osp.isdir(osp.join(data_root, split)):
        meta = osp.join('meta', f'{split}.txt')
        if osp.isfile(osp.join(data_root, meta)):
            return split, meta, f'ImageNet layout, the list {meta}'
        return split, '', f'ImageNet layout, {split}/ scanned (no {meta})'
    return '', '', 'a folder of images, scanned'


@DATASETS.register_module()
class NoiseMIMImageFolder(CustomDataset):
    """Unlabelled images of a folder, in any of these layouts:

    1. ImageNet: ``<root>/<split>/<class>/*.JPEG``, with or without
       ``<root>/meta/<split>.txt`` (read when present, else the folder is
       scanned), any number of classes;
    2. class folders: ``<root>/<class>/*.jpg``;
    3. any folder of images in any nesting, ``<root>/**/*.{jpg,png,...}``.

    Args:
        data_root (str): The folder.
        split (str): The ImageNet-layout sub-folder, read when
            ``<root>/<split>`` exists; else ``<root>`` itself is read.
            Defaults to ``'train'``.
        data_prefix (str, optional): A sub-folder to read instead (no layout
            detection).
        ann_file (str): A list of image paths (relative to the folder read),
            one a line; a trailing integer label on a line is ignored.
            Defaults to ``''`` (``meta/<split>.txt`` when it exists).
        extensions (Sequence[str]): Image extensions, any case. Defaults to
            :data:`IMAGE_EXTENSIONS`.
        **kwargs: Passed to mmpretrain's ``CustomDataset`` (``pipeline``,
            ``indices``, ``lazy_init``, ...).
    """

    def __init__(self,
                 data_root: str,
                 split: str = 'train',
                 data_prefix: Optional[str] = None,
                 ann_file: str = '',
                 extensions: Sequence[str] = IMAGE_EXTENSIONS,
                 **kwargs) -> None:
        if data_prefix is None:
            data_prefix, found_ann, self.layout = resolve_layout(
                data_root, split)
            ann_file = ann_file or found_ann
        else:
            self.layout = f'{data_prefix or "the folder"} scanned'
        super().__init__(
            data_root=data_root,
            data_prefix=data_prefix,
            ann_file=ann_file,
            with_label=False,
            extensions=extensions,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """The image paths (``img_path``), from the list or a scan."""
        if self.ann_file:
            names = [_path_of(line) for line in list_from_file(self.ann_file)]
            data_list = [
                dict(img_path=osp.join(self.img_prefix, n)) for n in names
                if n
            ]
        else:
            try:
                data_list = super().load_data_list()
            except RuntimeError as error:  # CustomDataset: 'Found 0 files'
                raise FileNotFoundError(
                    f'no images ({", ".join(self.extensions)}, any case) in '
                    f'{self.img_prefix!r}; give {LAYOUTS}.') from error
        if not data_list:
            raise FileNotFoundError(f'{self.ann_file!r} lists no images')
        MMLogger.get_current_instance().info(
            f'NoiseMIMImageFolder: {len(data_list)} images in {self.img_prefix} '
            f'({self.layout}).')
        return data_list


def _path_of(line: str) -> str:
    """A list line's path: ``'a/b.JPEG 3'`` -> ``'a/b.JPEG'``."""
    line = line.strip()
    head, _, tail = line.rpartition(' ')
    return head.strip() if head and tail.lstrip('-').isdigit() else line
