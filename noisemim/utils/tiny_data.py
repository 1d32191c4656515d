"""Tiny, valid data sets in the real layouts, for smoke runs and tests.

Every writer makes a few small images (scikit-image's photographs, or
coloured noise) with the files and folder names the real data set has, so
the real configs' dataset classes, pipelines and metrics run on them
unchanged: ImageNet (with or without ``meta/``), a plain folder of images,
COCO instance segmentation, ADE20K, CUB-200-2011, NABirds and iNaturalist
2017/2018. ``tools/misc/make_tiny_data.py`` is the command line;
docs/smoke.md runs every task's real config on them.
"""
import json
import os
import os.path as osp
from typing import Callable, Dict, Sequence

import numpy as np

PHOTOS = ('astronaut.png', 'chelsea.png', 'coffee.png', 'rocket.jpg',
          'motorcycle_left.png', 'retina.jpg', 'camera.png', 'moon.png')
# The first ImageNet-1K classes (sorted WordNet ids): labels 0, 1, 2, ...
IMAGENET_WNIDS = ('n01440764', 'n01443537', 'n01484850', 'n01491361',
                  'n01494475', 'n01496331', 'n01498041', 'n01514668')
# COCO 2017's 80 categories with their official ids; the tiny set paints two
# of them (a triangle: "kite", a square: "tv"), so the real 80-class configs
# read it unchanged.
COCO_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')
COCO_IDS = (*range(1, 12), *range(13, 26), 27, 28, *range(31, 45),
            *range(46, 66), 67, 70, *range(72, 83), *range(84, 91))
COCO_CLASSES = ('kite', 'tv')  # painted as a triangle and a square
COCO_SIZE = 96
ADE20K_SIZE = 64


def _mkdirs(path: str) -> str:
    """Create the folder of ``path``; return ``path``."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    return path


def photo(name: str, size: int) -> np.ndarray:
    """A scikit-image photograph, centre-cropped to a square and resized.

    Args:
        name (str): File name in ``skimage/data``.
        size (int): Side of the square, in pixels.

    Returns:
        np.ndarray: ``size x size x 3`` uint8 RGB pixels.
    """
    import skimage
    from PIL import Image
    image = Image.open(osp.join(skimage.data.data_dir, name)).convert('RGB')
    w, h = image.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return np.asarray(image.crop(box).resize((size, size), Image.BILINEAR))


def _jittered_crop(rng: np.random.Generator, source: np.ndarray,
                   size: int) -> np.ndarray:
    """A random crop of at least half the side, resized, colour-jittered."""
    from PIL import Image
    side = source.shape[0]
    s = int(rng.integers(side // 2, side + 1))
    y, x = rng.integers(0, side - s + 1, size=2)
    crop = Image.fromarray(source[y:y + s, x:x + s]).resize(
        (size, size), Image.BILINEAR)
    pixels = np.asarray(crop, np.float32) * rng.uniform(0.8, 1.2, 3)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_imagenet(root: str,
                   num_classes: int = 3,
                   train_per_class: int = 8,
                   val_per_class: int = 2,
                   size: int = 64,
                   meta: bool = True,
                   seed: int = 0) -> str:
    """An ImageNet-1K tree: ``train/<wnid>/*.JPEG`` and ``val/``.

    Class ``c`` is the ``c``-th ImageNet class (label ``c`` of the 1,000);
    its images are random crops of one photograph. With ``meta``, ``val/``
    is flat as in the real set and ``meta/{train,val}.txt`` list every image
    with its label (what mmpretrain's ``ImageNet`` reads); without it,
    ``val/`` has class folders like ``train/`` and there are no meta files.

    Args:
        root (str): The data root (``data/imagenet`` for the real set).
        num_classes (int): Classes, 1 to 8.
        train_per_class (int): Training images per class.
        val_per_class (int): Validation images per class.
        size (int): Image side in pixels.
        meta (bool): Write ``meta/`` and a flat ``val/``.
        seed (int): Seed of the crops.

    Returns:
        str: ``root``.
    """
    from PIL import Image
    if not 1 <= num_classes <= len(IMAGENET_WNIDS):
        raise ValueError(f'num_classes must be 1 to {len(IMAGENET_WNIDS)}, '
                         f'got {num_classes}')
    rng = np.random.default_rng(seed)
    lists = dict(train=[], val=[])
    for label, wnid in enumerate(IMAGENET_WNIDS[:num_classes]):
        source = photo(PHOTOS[label], 128)
        for split, num in (('train', train_per_class), ('val',
                                                        val_per_class)):
            for i in range(num):
                if split == 'val' and meta:
                    n = len(lists['val']) + 1
                    name = f'ILSVRC2012_val_{n:08d}.JPEG'
                else:
                    name = f'{wnid}/{wnid}_{i + 1}.JPEG'
                pixels = _jittered_crop(rng, source, size)
                Image.fromarray(pixels).save(
                    _mkdirs(osp.join(root, split, name)), format='JPEG')
                lists[split].append(f'{name} {label}')
    if meta:
        for split, lines in lists.items():
            with open(_mkdirs(osp.join(root, 'meta', f'{split}.txt')),
                      'w') as f:
                f.write('\n'.join(lines) + '\n')
    return root


def write_image_folder(root: str,
                       num_images: int = 16,
                       size: int = 64,
                       seed: int = 0) -> str:
    """A plain folder of unlabelled images in several nested folders and
    every format a user may have: jpg, jpeg, png, webp and bmp.

    Args:
        root (str): The folder.
        num_images (int): How many images.
        size (int): Image side in pixels.
        seed (int): Seed of the crops.

    Returns:
        str: ``root``.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    places = ('', 'holiday', 'holiday/day2', 'misc/scans/old')
    formats = ('jpg', 'jpeg', 'png', 'webp', 'bmp')
    for i in range(num_images):
        pixels = _jittered_crop(rng, photo(PHOTOS[i % len(PHOTOS)], 128),
                                size)
        name = osp.join(places[i % len(places)],
                        f'img_{i:03d}.{formats[i % len(formats)]}')
        Image.fromarray(pixels).save(_mkdirs(osp.join(root, name)))
    return root


def write_class_folders(root: str, size: int = 48) -> str:
    """scikit-image's 8 photographs as 2 classes of an image-folder data set
    (mmpretrain's ``CustomDataset``: ``root/<class>/*.png``).

    Args:
        root (str): The data root.
        size (int): Image side in pixels.

    Returns:
        str: ``root``.
    """
    from PIL import Image
    for i, name in enumerate(PHOTOS):
        path = osp.join(root, f'class_{i % 2}',
                        f'{osp.splitext(name)[0]}.png')
        Image.fromarray(photo(name, size)).save(_mkdirs(path))
    return root


def _shape(rng: np.random.Generator, corners: int) -> np.ndarray:
    """A random triangle or (rotated) square in a COCO_SIZE image."""
    side = rng.uniform(28, 44)
    cx, cy = rng.uniform(side / 2 + 2, COCO_SIZE - side / 2 - 2, size=2)
    n = corners
    angles = rng.uniform(0, 2 * np.pi) + np.arange(n) * 2 * np.pi / n
    return np.stack([cx + side / 2 * np.cos(angles),
                     cy + side / 2 * np.sin(angles)], 1).astype(np.float32)


def write_coco_set(root: str,
                   split: str,
                   photos: Sequence[str] = PHOTOS[:6],
                   seed: int = 0) -> str:
    """Write scikit-image's photographs (96 px), each with a painted
    triangle ("kite") and square ("tv"), as one COCO instance-segmentation
    split that lists COCO's 80 categories with their official ids.

    Args:
        root (str): The data root.
        split (str): Image folder name and annotation file suffix
            (``instances_{split}.json``).
        photos (Sequence[str]): File names in ``skimage/data``.
        seed (int): Seed of the shapes.

    Returns:
        str: The annotation file.
    """
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, split), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for image_id, name in enumerate(photos, 1):
        canvas = np.ascontiguousarray(photo(name, COCO_SIZE)[..., ::-1])
        for name, corners in zip(COCO_CLASSES, (3, 4)):
            category_id = COCO_IDS[COCO_NAMES.index(name)]
            poly = _shape(rng, corners)
            color = [int(c) for c in rng.integers(0, 256, 3)]
            cv2.fillPoly(canvas, [np.round(poly).astype(np.int32)], color)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            annotations.append(
                dict(id=len(annotations) + 1, image_id=image_id,
                     category_id=category_id, iscrowd=0,
                     bbox=[float(x0), float(y0), float(x1 - x0),
                           float(y1 - y0)],
                     area=float(cv2.contourArea(poly)),
                     segmentation=[poly.reshape(-1).tolist()]))
        file_name = f'{image_id:06d}.jpg'
        cv2.imwrite(osp.join(root, split, file_name), canvas)
        images.append(dict(id=image_id, file_name=file_name,
                           height=COCO_SIZE, width=COCO_SIZE))
    categories = [dict(id=i, name=n) for i, n in zip(COCO_IDS, COCO_NAMES)]
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=categories), f)
    return ann_file


def write_coco(root: str) -> str:
    """A COCO 2017 tree (``train2017/``, ``val2017/``,
    ``annotations/instances_{train,val}2017.json``) of 6 and 4 images, each
    with a "kite" (a triangle) and a "tv" (a square); the files list COCO's
    80 categories, so the real configs read them unchanged.

    Args:
        root (str): The data root (``data/coco`` for the real set).

    Returns:
        str: ``root``.
    """
    write_coco_set(root, 'train2017', PHOTOS[:6], seed=0)
    write_coco_set(root, 'val2017', PHOTOS[:4], seed=1)
    return root


def ade20k_label_map(image: np.ndarray) -> np.ndarray:
    """An ADE20K-style label map made from an image: 1 + its dominant colour
    channel (classes 1..3), 0 (ignored: "other") where it is dark."""
    labels = 1 + image.argmax(axis=-1)
    labels[image.max(axis=-1) < 40] = 0
    return labels.astype(np.uint8)


def write_ade20k(root: str) -> str:
    """A tiny ADE20K tree (``ADEChallengeData2016`` layout) of 64 px
    photographs: 4 training and 2 validation images, each with a label map
    (:func:`ade20k_label_map`).

    Args:
        root (str): The data root (``data/ade/ADEChallengeData2016``).

    Returns:
        str: ``root``.
    """
    from PIL import Image
    for i, name in enumerate(PHOTOS[:6]):
        split = 'training' if i < 4 else 'validation'
        image = photo(name, ADE20K_SIZE)
        stem = f"ADE_{'train' if split == 'training' else 'val'}_{i + 1:08d}"
        for sub, array, ext in (('images', image, 'jpg'),
                                ('annotations', ade20k_label_map(image),
                                 'png')):
            path = osp.join(root, sub, split, f'{stem}.{ext}')
            Image.fromarray(array).save(_mkdirs(path))
    return root


def write_cub(root: str, per_class: int = 2) -> str:
    """A CUB-200-2011 tree in the official layout: 4 classes of coloured
    64 px images, ``per_class`` train and 1 test image each.

    Args:
        root (str): The data root (``data/CUB_200_2011``).
        per_class (int): Training images per class.

    Returns:
        str: ``root``.
    """
    from PIL import Image
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    images, labels, split = [], [], []
    rng = np.random.default_rng(0)
    for c, colour in enumerate(colours):
        folder = f'{c + 1:03d}.Class_{c + 1}'
        for i in range(per_class + 1):
            pixels = np.clip(rng.normal(colour, 20, (64, 64, 3)), 0, 255)
            name = f'{folder}/img_{i}.jpg'
            Image.fromarray(pixels.astype(np.uint8)).save(
                _mkdirs(osp.join(root, 'images', name)))
            n = len(images) + 1
            images.append(f'{n} {name}')
            labels.append(f'{n} {c + 1}')
            split.append(f'{n} {int(i < per_class)}')
    for name, lines in (('images.txt', images),
                        ('image_class_labels.txt', labels),
                        ('train_test_split.txt', split)):
        with open(osp.join(root, name), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return root


def write_image(path: str, value: int) -> None:
    """A 12x10 JPEG of one grey level."""
    from PIL import Image
    Image.fromarray(np.full((10, 12, 3), value, np.uint8)).save(
        _mkdirs(path))


# (image id, path under images/, class id, 1 = train)
NABIRDS = [
    ('0000139e-21dc-4d0c-bfe1-4cae3c85c829', '0817/0000139e21dc.jpg', 817, 1),
    ('0000d9fc-4e02-4c06-a0af-a55cfb16b12b', '0860/0000d9fc4e02.jpg', 860, 0),
    ('00019306-9d83-4334-b255-a447742edce3', '0900/000193069d83.jpg', 900, 1),
    ('0001afd4-99a1-4a67-b940-d419413e23b3', '0645/0001afd499a1.jpg', 645, 1),
    ('000332b8-997c-4540-9647-2f0a8495aecf', '0817/000332b8997c.jpg', 817, 0),
]
NABIRDS_CLASSES = {
    0: 'Birds',
    645: 'Bufflehead (Female/Eclipse)',
    817: 'Oak Titmouse',
    860: 'Yellow-rumped Warbler (Winter/juvenile Myrtle)',
    900: 'Common Raven',
}


def write_nabirds(root: str) -> str:
    """The official NABirds files (string image ids, sparse class ids) over
    5 images of one grey level each (:data:`NABIRDS`).

    Args:
        root (str): The data root (``data/nabirds``).

    Returns:
        str: ``root``.
    """
    root = str(root)
    lines = {name: [] for name in ('images', 'labels', 'split')}
    for i, (image_id, path, class_id, train) in enumerate(NABIRDS):
        write_image(osp.join(root, 'images', path), 40 * i)
        lines['images'].append(f'{image_id} {path}')
        lines['labels'].append(f'{image_id} {class_id}')
        lines['split'].append(f'{image_id} {train}')
    for name, key in (('images.txt', 'images'),
                      ('image_class_labels.txt', 'labels'),
                      ('train_test_split.txt', 'split')):
        with open(osp.join(root, name), 'w') as f:
            f.write('\n'.join(lines[key]) + '\n')
    with open(osp.join(root, 'classes.txt'), 'w') as f:
        f.write(''.join(f'{k} {v}\n' for k, v in NABIRDS_CLASSES.items()))
    return root


def write_inat(root: str, year: int, split: str) -> str:
    """An official-format iNaturalist ``{split}{year}.json`` with 3
    categories and 4 images of one grey level each.

    Args:
        root (str): The data root (``data/inat2017`` or ``data/inat2018``).
        year (int): 2017 or 2018 (2018 names its folders by category id).
        split (str): ``train`` or ``val``.

    Returns:
        str: ``root``.
    """
    root = str(root)
    folder = 'train_val_images' if year == 2017 else f'train_val{year}'
    categories = [
        dict(id=0, name='Anas platyrhynchos', supercategory='Aves'),
        dict(id=1, name='Quercus agrifolia', supercategory='Plantae'),
        dict(id=2, name='Danaus plexippus', supercategory='Insecta'),
    ]
    if year == 2018:
        categories = [dict(id=c['id'], name=str(c['id'])) for c in categories]
    images, annotations = [], []
    for i, category in enumerate([2, 0, 1, 2]):
        name = f'{folder}/{categories[category]["name"]}/{split}{i}.jpg'
        write_image(osp.join(root, name), 50 * i)
        images.append(
            dict(id=100 + i, file_name=name, width=12, height=10,
                 license=1, rights_holder='x'))
        annotations.append(dict(id=i, image_id=100 + i,
                                category_id=category))
    with open(_mkdirs(osp.join(root, f'{split}{year}.json')), 'w') as f:
        json.dump(dict(info={}, images=images, annotations=annotations,
                       categories=categories[::-1], licenses=[]), f)
    return root


def _inat(year: int) -> Callable[[str], str]:
    def write(root: str) -> str:
        for split in ('train', 'val'):
            write_inat(root, year, split)
        return root

    write.__doc__ = f'iNaturalist {year}: train and val.'
    return write


# name -> the writer of that whole data set into a root
WRITERS: Dict[str, Callable[[str], str]] = {
    'imagenet': write_imagenet,
    'folder': write_image_folder,
    'coco': write_coco,
    'ade20k': write_ade20k,
    'cub': write_cub,
    'nabirds': write_nabirds,
    'inat2017': _inat(2017),
    'inat2018': _inat(2018),
}


def write_tiny_data(name: str, root: str, **kwargs) -> str:
    """Write the tiny data set ``name`` (a key of :data:`WRITERS`) to
    ``root``.

    Args:
        name (str): ``imagenet``, ``folder``, ``coco``, ``ade20k``, ``cub``,
            ``nabirds``, ``inat2017`` or ``inat2018``.
        root (str): The folder to write (created).
        **kwargs: Options of the writer (``meta`` for ``imagenet``).

    Returns:
        str: ``root``.
    """
    if name not in WRITERS:
        raise ValueError(f'unknown tiny data set {name!r}: expected one of '
                         f'{", ".join(WRITERS)}')
    os.makedirs(root, exist_ok=True)
    return WRITERS[name](root, **kwargs)
