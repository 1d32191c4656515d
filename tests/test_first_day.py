"""Defaults that do not surprise: a run resumes only when asked and says from
what; num_workers=0 works; --no-persistent-workers and --no-validate; a typo
in a model setting gets "did you mean", a wrong init_cfg says what is
expected; nothing is written to the work dir before the checks pass."""
import glob
import os
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from train_tool import (DEMO, ROOT, VIT_B, build_config, loss_records,
                        plain_folder, run_train)

import noisemim  # noqa: F401
from noisemim.utils.config_checks import (accepted_keys, check_init_cfgs,
                                          check_model_keys)
from noisemim.utils.launch import default_scope
from noisemim.utils.run_options import fit_dataloader_workers, resolve_resume

SHORT = ['train_cfg.max_iters=2', 'train_dataloader.batch_size=2',
         'default_hooks.checkpoint.interval=2',
         'default_hooks.logger.interval=1']


def test_vit_b_config_does_not_resume_by_itself(tmp_path):
    cfg = Config.fromfile(VIT_B)
    assert cfg.get('resume', False) is False
    assert resolve_resume(cfg, None) is None and cfg.resume is False
    cfg.resume = True  # a config that asks for it resumes, and says so
    cfg.work_dir = str(tmp_path)
    assert 'resume=True in the config: no checkpoint' in resolve_resume(
        cfg, None)
    assert cfg.resume is False


def test_resume_only_when_asked_and_never_from_none(tmp_path):
    work_dir = tmp_path / 'wd'
    log = run_train(DEMO, work_dir, '--resume', cfg_options=SHORT)
    assert 'no checkpoint in' in log and 'starting a fresh run' in log
    assert 'checkpoint None' not in log
    first = loss_records(work_dir)
    assert [r['iter'] for r in first] == [1, 2]
    # the same command without --resume starts again from iteration 1
    log = run_train(DEMO, work_dir, cfg_options=SHORT)
    assert 'Resuming' not in log and 'resumed' not in log
    assert [r['iter'] for r in loss_records(work_dir)] == [1, 2]
    # --resume continues from the newest checkpoint, and names it
    log = run_train(DEMO, work_dir, '--resume', cfg_options=[
        *SHORT, 'train_cfg.max_iters=3'])
    assert f'Resuming from {osp.join(str(work_dir), "iter_2.pth")}' in log
    assert [r['iter'] for r in loss_records(work_dir)] == [3]


def test_num_workers_0_with_persistent_workers_builds(tmp_path):
    cfg = Config.fromfile(VIT_B)
    loader = cfg.train_dataloader
    assert loader.persistent_workers is True
    loader.update(num_workers=0, prefetch_factor=2, batch_size=2)
    notes = fit_dataloader_workers(cfg)
    assert loader.persistent_workers is False and 'prefetch_factor' not in loader
    assert notes == ['train_dataloader: num_workers=0 (data loaded in the '
                     'main process), so persistent_workers is switched off.']
    loader.dataset = dict(type='EmbeddedPhotos',
                          pipeline=[dict(type='LoadImageFromFile')])
    loader.pin_memory = False
    assert Runner.build_dataloader(loader.to_dict()).num_workers == 0
    # with workers: left alone unless --no-persistent-workers
    cfg = Config.fromfile(VIT_B)
    assert fit_dataloader_workers(cfg) == []
    assert cfg.train_dataloader.persistent_workers is True
    data = str(tmp_path / 'images')
    plain_folder(data)
    cfg, notes = build_config(VIT_B, tmp_path / 'wd', '--data-root', data,
                              '--no-persistent-workers')
    assert cfg.train_dataloader.persistent_workers is False
    assert any('--no-persistent-workers' in n for n in notes)


def test_no_validate_drops_the_validation_loop(tmp_path):
    config = osp.join(ROOT, 'configs/classification/'
                      'noisemim_vit-b-p16_8xb128-coslr-100e_in1k.py')
    data = tmp_path / 'imagenet'
    for split in ('train', 'val'):
        (data / split).mkdir(parents=True)
    options = ['--cfg-options', f'train_dataloader.dataset.data_root={data}',
               f'val_dataloader.dataset.data_root={data}',
               f'test_dataloader.dataset.data_root={data}']
    cfg, _ = build_config(config, tmp_path / 'wd', *options)
    assert None not in (cfg.val_cfg, cfg.val_dataloader, cfg.val_evaluator)
    cfg, notes = build_config(config, tmp_path / 'wd', '--no-validate',
                              *options)
    assert (cfg.val_cfg, cfg.val_dataloader, cfg.val_evaluator) == (
        None, None, None)
    assert '--no-validate: no validation during training.' in notes


def test_a_typo_gets_did_you_mean_naming_the_class(tmp_path):
    with pytest.raises(ValueError) as error:
        build_config(VIT_B, tmp_path / 'wd', '--cfg-options',
                     'model.backbone.mask_ration=0.5')
    message = str(error.value)
    assert "model.backbone.mask_ration: NoiseMIMViT" in message
    assert "did you mean 'mask_ratio'?" in message
    with pytest.raises(ValueError, match=r"NoiseMIM \(.*did you mean "
                       "'norm_pix'"):
        build_config(VIT_B, tmp_path / 'wd', '--cfg-options',
                     'model.norm_pixx=True')
    assert not (tmp_path / 'wd').exists()  # nothing written


def test_keys_passed_on_by_kwargs_are_accepted():
    from mmpretrain.models import VisionTransformer

    from noisemim.models import NoiseMIMViT
    keys = accepted_keys(NoiseMIMViT)
    # NoiseMIMViT's own arguments and VisionTransformer's, via **kwargs
    assert {'mask_ratio', 'noise_layer', 'arch', 'drop_path_rate',
            'init_cfg'} <= keys
    assert accepted_keys(VisionTransformer) < keys


#: Every pre-training config and one of each downstream kind (mmpretrain,
#: mmdet, mmseg): no false "unknown setting" on the project's own configs.
CHECKED = sorted(glob.glob(osp.join(ROOT, 'configs/pretrain/*.py'))) + [
    osp.join(ROOT, 'configs', p) for p in (
        'classification/noisemim_vit-b-p16_8xb128-coslr-100e_in1k.py',
        'classification/noisemim_vit-b-p16_8xb2048-linear-coslr-90e_in1k.py',
        'detection/mask-rcnn_noisemim-vit-b_simplefpn_lsj-100e_coco.py',
        'segmentation/upernet_noisemim-vit-b_8xb2-amp-160k_ade20k-512x512.py')
]


@pytest.mark.parametrize('path', CHECKED, ids=osp.basename)
def test_the_project_configs_pass_the_checks(path):
    cfg = Config.fromfile(path)
    default_scope(cfg)  # mmdet / mmseg installed
    check_model_keys(cfg)
    check_init_cfgs(cfg)
    assert cfg.get('resume', False) is False  # resumes only with --resume


def test_a_wrong_init_cfg_says_what_is_expected(tmp_path):
    with pytest.raises(ValueError) as error:
        build_config(VIT_B, tmp_path / 'wd', '--cfg-options',
                     'model.backbone.init_cfg.checkpoint=x.pth')
    message = str(error.value)
    assert "model.backbone.init_cfg = {'checkpoint': 'x.pth'}" in message
    assert "expected None, a dict with a 'type'" in message
    # init_cfg a list: mmengine's merge would fail with "list indices must
    # be integers"
    with pytest.raises(ValueError) as error:
        build_config(VIT_B, tmp_path / 'wd', '--cfg-options',
                     'model.init_cfg.checkpoint=x.pth')
    assert 'model.init_cfg is a list' in str(error.value)
    assert "an init_cfg is None, a dict with a 'type'" in str(error.value)
    # init_cfg a list: mmengine's merge would fail with "list indices must
    # be integers"
    with pytest.raises(ValueError) as error:
        build_config(VIT_B, tmp_path / 'wd', '--cfg-options',
                     'model.init_cfg.checkpoint=x.pth')
    assert 'model.init_cfg is a list' in str(error.value)
    assert "an init_cfg is None, a dict with a 'type'" in str(error.value)
    cfg = Config.fromfile(VIT_B)
    cfg.model.init_cfg.append(dict(layer='Linear'))
    with pytest.raises(ValueError, match=r"model.init_cfg = \[.*expected"):
        check_init_cfgs(cfg)
    assert not (tmp_path / 'wd').exists()


def test_a_failed_check_leaves_no_work_dir(tmp_path):
    work_dir = tmp_path / 'wd'
    with pytest.raises(FileNotFoundError, match='does not exist'):
        build_config(VIT_B, work_dir, '--cfg-options',
                     f'train_dataloader.dataset.data_root={tmp_path / "no"}')
    assert not work_dir.exists()
    cfg, _ = build_config(DEMO, work_dir)  # passing checks write nothing
    assert cfg.work_dir == str(work_dir) and not work_dir.exists()
    assert not os.listdir(tmp_path)
