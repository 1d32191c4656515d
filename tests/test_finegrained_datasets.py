"""NABirds and iNaturalist datasets, each on a tiny tree in its official
format, built directly and from the fine-grained configs."""
import json
import os.path as osp

import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS

from noisemim.datasets import INaturalist, NABirds
from noisemim.utils.tiny_data import write_inat, write_nabirds

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]


def test_nabirds_reads_the_official_files(tmp_path):
    root = write_nabirds(tmp_path / 'nabirds')
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
    root = write_nabirds(tmp_path / 'nabirds')
    with open(osp.join(root, 'train_test_split.txt'), 'a') as f:
        f.write('ffffffff-0000 1\n')
    with pytest.raises(ValueError, match='train_test_split.txt.*ffffffff'):
        NABirds(root)
    with pytest.raises(FileNotFoundError, match='classes.txt'):
        NABirds(str(tmp_path / 'empty'))
    with pytest.raises(ValueError, match="'val'"):
        NABirds(root, split='val')


@pytest.mark.parametrize('year', [2017, 2018])
def test_inaturalist_reads_the_official_json(tmp_path, year):
    root = write_inat(tmp_path / f'inat{year}', year, 'val')
    dataset = INaturalist(root, split='val', year=year, pipeline=PIPELINE)
    assert len(dataset) == 4 and dataset.test_mode
    assert [d['gt_label'] for d in dataset.load_data_list()] == [2, 0, 1, 2]
    assert dataset.CLASSES[0] == ('Anas platyrhynchos'
                                  if year == 2017 else '0')
    sample = dataset[3]
    assert int(sample['data_samples'].gt_label) == 2
    assert int(sample['inputs'][0, 0, 0]) == 150


def test_inaturalist_errors_name_the_problem(tmp_path):
    root = write_inat(tmp_path, 2018, 'train')
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
    ('nabirds', lambda root: write_nabirds(root), 555),
    ('inat2017', lambda root: write_inat(
        write_inat(root, 2017, 'train'), 2017, 'val'), 5089),
    ('inat2018', lambda root: write_inat(
        write_inat(root, 2018, 'train'), 2018, 'val'), 8142),
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
