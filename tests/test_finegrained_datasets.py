"""NABirds and iNaturalist datasets, each on a tiny tree in its official
format, built directly and from the fine-grained configs."""
import json
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS
from PIL import Image

from noisemim.datasets import INaturalist, NABirds

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]


def write_image(path, value: int) -> None:
    """A 12x10 JPEG of one colour."""
    import os
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(np.full((10, 12, 3), value, np.uint8)).save(path)


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


def make_nabirds(root) -> str:
    """The official NABirds files (string ids, sparse class ids)."""
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


def test_nabirds_reads_the_official_files(tmp_path):
    root = make_nabirds(tmp_path / 'nabirds')
    train = NABirds(root, split='train', pipeline=PIPELINE)
    test = NABirds(root, split='test', pipeline=PIPELINE)
    # labels index the class ids in use (645, 817, 860, 900), in both splits
    assert train.CLASSES == test.CLASSES == (
        'Bufflehead (Female/Eclipse)', 'Oak Titmouse',
        'Yellow-rumped Warbler (Winter/juvenile Myrtle)', 'Common Raven')
    assert [d['gt_label'] for d in train.load_data_list()] == [1, 3, 0]
    assert [d['gt_label'] for d in test.load_data_list()] == [2, 1]
    assert test.test_mode and not train.test_mode
    sample = train[1]
    assert sample['inputs'].shape == (3, 10, 12)
    assert int(sample['inputs'][0, 0, 0]) == 80  # the third image's colour
    assert int(sample['data_samples'].gt_label) == 3


def test_nabirds_errors_name_the_problem(tmp_path):
    root = make_nabirds(tmp_path / 'nabirds')
    with open(osp.join(root, 'train_test_split.txt'), 'a') as f:
        f.write('ffffffff-0000 1\n')
    with pytest.raises(ValueError, match='train_test_split.txt.*ffffffff'):
        NABirds(root)
    with pytest.raises(FileNotFoundError, match='classes.txt'):
        NABirds(str(tmp_path / 'empty'))
    with pytest.raises(ValueError, match="'val'"):
        NABirds(root, split='val')


def make_inat(root, year: int, split: str) -> str:
    """An official-format ``{split}{year}.json`` with 3 categories."""
    root = str(root)
    folder = 'train_val_images' if year == 2017 else f'train_val{year}'
    categories = [
        dict(id=0, name='Anas platyrhynchos', supercategory='Aves'),
        dict(id=1, name='Quercus agrifolia', supercategory='Plantae'),
        dict(id=2, name='Danaus plexippus', supercategory='Insecta'),
    ]
    if year == 2018:  # 2018 names its folders by category id
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
    with open(osp.join(root, f'{split}{year}.json'), 'w') as f:
        json.dump(dict(info={}, images=images, annotations=annotations,
                       categories=categories[::-1], licenses=[]), f)
    return root


@pytest.mark.parametrize('year', [2017, 2018])
def test_inaturalist_reads_the_official_json(tmp_path, year):
    root = make_inat(tmp_path / f'inat{year}', year, 'val')
    dataset = INaturalist(root, split='val', year=year, pipeline=PIPELINE)
    assert len(dataset) == 4 and dataset.test_mode
    assert [d['gt_label'] for d in dataset.load_data_list()] == [2, 0, 1, 2]
    assert dataset.CLASSES[0] == ('Anas platyrhynchos'
                                  if year == 2017 else '0')
    sample = dataset[3]
    assert int(sample['data_samples'].gt_label) == 2
    assert int(sample['inputs'][0, 0, 0]) == 150


def test_inaturalist_errors_name_the_problem(tmp_path):
    root = make_inat(tmp_path, 2018, 'train')
    path = osp.join(root, 'train2018.json')
    with open(path) as f:
        data = json.load(f)
    data['annotations'].pop()
    with open(path, 'w') as f:
        json.dump(data, f)
    with pytest.raises(ValueError, match=r'1 images .* no annotation.*103'):
        INaturalist(root, split='train', year=2018)
    with pytest.raises(FileNotFoundError, match='val2018.json'):
        INaturalist(root, split='val', year=2018)
    with pytest.raises(ValueError, match='2020'):
        INaturalist(root, year=2020)


@pytest.mark.parametrize('name,make,num_classes', [
    ('nabirds', lambda root: make_nabirds(root), 555),
    ('inat2017', lambda root: make_inat(
        make_inat(root, 2017, 'train'), 2017, 'val'), 5089),
    ('inat2018', lambda root: make_inat(
        make_inat(root, 2018, 'train'), 2018, 'val'), 8142),
])
def test_finegrained_configs_build_their_datasets(tmp_path, name, make,
                                                  num_classes):
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs/classification/'
                 f'noisemim_vit-b-p16_8xb64-coslr-100e_{name}.py'))
    root = make(tmp_path / name)
    assert cfg.model.head.num_classes == num_classes
    assert cfg.data_preprocessor.num_classes == num_classes
    sizes = []
    for loader in ('train_dataloader', 'test_dataloader'):
        dataset_cfg = cfg[loader].dataset
        dataset_cfg.data_root = root
        dataset = DATASETS.build(dataset_cfg)
        sizes.append(len(dataset))
        # the real 224 px pipelines run on the files
        assert dataset[0]['inputs'].shape == (3, 224, 224)
    assert sizes == ([3, 2] if name == 'nabirds' else [4, 4])
