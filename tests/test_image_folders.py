"""Pre-training on any image folder: ImageNet layout (with or without meta/,
any number of classes, or its class-folder root) or a plain folder of images
in any nesting; ``tools/train.py --data-root`` on the ViT-B pre-training
config (its data pipeline, a tiny ViT) and on the demo config."""
import math
import os
import os.path as osp

import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS
from train_tool import (DEMO, ROOT, VIT_B, build_config, imagenet_folder,
                        loss_records, plain_folder, run_train)

import noisemim  # noqa: F401
from noisemim.analysis.images import image_paths
from noisemim.datasets import NoiseMIMImageFolder
from noisemim.study.protocol import apply_protocol
from noisemim.utils.launch import check_data_roots

BOTH_FORMS = ('ImageNet-layout folder', 'any folder of images')


def paths_of(dataset) -> set:
    return {osp.normpath(d['img_path']) for d in dataset.load_data_list()}


def test_image_folder_reads_every_layout(tmp_path):
    plain = plain_folder(str(tmp_path / 'plain'))
    dataset = NoiseMIMImageFolder(str(tmp_path / 'plain'),
                                  pipeline=[dict(type='LoadImageFromFile')])
    assert paths_of(dataset) == {osp.normpath(p) for p in plain}
    for i in range(len(dataset)):  # jpg, png, webp, bmp all decode
        assert dataset[i]['img'].shape == (30, 40, 3)

    imagenet = imagenet_folder(str(tmp_path / 'in3'))  # 3 classes, no meta
    assert paths_of(NoiseMIMImageFolder(str(tmp_path / 'in3'))) == {
        osp.normpath(p) for p in imagenet}  # train/ only, val/ left out
    # its class-folder root itself
    assert paths_of(NoiseMIMImageFolder(str(tmp_path / 'in3' / 'train'))) == {
        osp.normpath(p) for p in imagenet}
    # with meta/train.txt: the list is read (it leaves the last image out)
    listed = imagenet_folder(str(tmp_path / 'meta'), meta=True)
    with_meta = NoiseMIMImageFolder(str(tmp_path / 'meta'))
    assert paths_of(with_meta) == {osp.normpath(p) for p in listed[:-1]}
    assert 'gt_label' not in with_meta.get_data_info(0)


def test_empty_or_missing_folders_name_both_forms(tmp_path):
    (tmp_path / 'empty' / 'sub').mkdir(parents=True)
    (tmp_path / 'empty' / 'sub' / 'readme.txt').write_text('no images')
    for root in (tmp_path / 'empty', tmp_path / 'missing'):
        with pytest.raises(FileNotFoundError) as error:
            NoiseMIMImageFolder(str(root))
        assert all(form in str(error.value) for form in BOTH_FORMS)
        assert str(root) in str(error.value)
    cfg = Config.fromfile(VIT_B)
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'empty')
    with pytest.raises(FileNotFoundError) as error:
        check_data_roots(cfg)
    assert all(form in str(error.value) for form in BOTH_FORMS)
    assert '--data-root' in str(error.value)


def tiny_vit_b(tmp_path) -> str:
    """The ViT-B pre-training config with a tiny ViT and one short epoch;
    its dataset, data pipeline (224 px crops), optimizer and hooks as they
    are (num_workers=0 beside the config's persistent_workers=True)."""
    path = tmp_path / 'tiny_vit_b.py'
    path.write_text(
        f'_base_ = {VIT_B!r}\n'
        'model = dict(\n'
        '    backbone=dict(arch=dict(_delete_=True, embed_dims=64,\n'
        '        num_layers=4, num_heads=4, feedforward_channels=128)),\n'
        '    mim_head=dict(in_channels=64),\n'
        '    denoise_head=dict(in_channels=64))\n'
        'train_dataloader = dict(batch_size=2, num_workers=0)\n'
        'train_cfg = dict(max_epochs=1)\n'
        'default_hooks = dict(logger=dict(interval=1))\n')
    return str(path)


@pytest.mark.parametrize('layout', ['plain', 'imagenet'])
def test_vit_b_config_pretrains_on_any_folder(tmp_path, layout):
    data = str(tmp_path / 'data')
    images = (plain_folder(data) if layout == 'plain' else
              imagenet_folder(data, classes=3))  # 3 classes, no meta/
    work_dir = tmp_path / 'wd'
    log = run_train(tiny_vit_b(tmp_path), work_dir, '--data-root', data)
    folder = data if layout == 'plain' else osp.join(data, 'train')
    assert f'NoiseMIMImageFolder: {len(images)} images in {folder}' in log
    assert f'--data-root {data}: pre-training on its images' in log
    assert 'num_workers=0' in log and 'persistent_workers is switched off' in log
    assert 'Precision: ' in log
    records = loss_records(work_dir)
    assert len(records) == math.ceil(len(images) / 2)  # one epoch, batch 2
    assert all(math.isfinite(r['loss']) for r in records)
    assert osp.isfile(work_dir / 'epoch_1.pth')


def test_demo_config_takes_a_data_root(tmp_path):
    data = str(tmp_path / 'data')
    imagenet_folder(data, classes=2)
    work_dir = tmp_path / 'wd'
    log = run_train(DEMO, work_dir, '--data-root', data, cfg_options=[
        'train_cfg.max_iters=2', 'train_dataloader.batch_size=2',
        'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1'
    ])
    assert f'NoiseMIMImageFolder: 4 images in {osp.join(data, "train")}' in log
    assert "in place of the config's EmbeddedPhotos" in log
    assert len(loss_records(work_dir)) == 2


def test_data_root_needs_a_pretraining_config(tmp_path):
    config = osp.join(ROOT, 'configs/classification/'
                      'noisemim_vit-b-p16_8xb128-coslr-100e_in1k.py')
    with pytest.raises(ValueError, match='--data-root is for pre-training'):
        build_config(config, tmp_path / 'wd', '--data-root', str(tmp_path))


def test_config_override_is_the_same_as_the_flag(tmp_path):
    data = str(tmp_path / 'data')
    images = imagenet_folder(data, classes=3)
    cfg = Config.fromfile(VIT_B)
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': data})
    dataset = DATASETS.build(cfg.train_dataloader.dataset)  # SkipBadSamples
    assert len(dataset) == len(images)
    flagged, _ = build_config(VIT_B, tmp_path / 'wd', '--data-root', data)
    assert flagged.train_dataloader.dataset.data_root == data
    assert flagged.train_dataloader.dataset.dataset_type == 'NoiseMIMImageFolder'
    assert not os.path.exists(tmp_path / 'wd')  # the Runner makes it


def test_study_and_analysis_take_the_same_folders(tmp_path):
    plain = plain_folder(str(tmp_path / 'plain'))
    imagenet = imagenet_folder(str(tmp_path / 'in'), classes=3)
    # analysis tools (--images DIR)
    assert image_paths(str(tmp_path / 'plain')) == sorted(plain)
    assert image_paths(str(tmp_path / 'in')) == sorted(imagenet)
    # study: the protocol's pretrain_dataset (--protocol-options)
    cell = Config.fromfile(DEMO)
    protocol = Config(dict(cell_options={}, pretrain_dataset=dict(
        type='NoiseMIMImageFolder', data_root=str(tmp_path / 'plain'))))
    apply_protocol(cell, protocol)
    dataset = DATASETS.build(cell.train_dataloader.dataset)
    assert len(dataset) == len(plain)
    assert dataset[0]['inputs'].shape[-2:] == (64, 64)  # the cell's pipeline
    # the ImageNet-100 study's cells read any folder too
    vit_s = Config.fromfile(osp.join(
        ROOT, 'configs/pretrain/study/imagenet100/_base_/vit-s_pretrain.py'))
    vit_s.train_dataloader.dataset.update(data_root=str(tmp_path / 'plain'),
                                          pipeline=[])
    assert len(DATASETS.build(vit_s.train_dataloader.dataset)) == len(plain)
