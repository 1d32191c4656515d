"""noisemim installs like an OpenMMLab package: its configs, tools and model
index are in ``noisemim/.mim/``, and ``_base_ = 'noisemim::<path>'`` resolves.

* The editable checkout (how ``tools/setup_env.sh`` installs noisemim): the
  links that ``setup.py develop`` makes are made again through the same
  function (a ``.venv`` installed before they existed resolves too); a config
  in a folder outside the checkout inherits the ViT-B pre-training config and
  equals it, and one inheriting the tiny demo, read as ``tools/train.py``
  reads it, builds in the ``noisemim`` scope and takes a loss step.
* The sdist of a copy of the checkout carries the configs, tools and model
  index (MANIFEST.in); a wheel built from the copy (``pip wheel --no-deps
  --no-build-isolation``, offline) holds ``noisemim/.mim/configs``,
  ``tools`` and ``model-index.yml`` as files;
  installed with ``--target`` and imported in a process that does not see the
  checkout, it resolves ``noisemim::`` from its own ``.mim``.
"""
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile

import pytest
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.utils import get_installed_path

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VIT_B = 'pretrain/noisemim_vit-base-p16_8xb512-amp-coslr-400e_in1k.py'
# What an sdist is made from (MANIFEST.in picks the files inside these).
SOURCES = ('setup.py', 'setup.cfg', 'MANIFEST.in', 'README.md',
           'requirements.txt', 'requirements', 'model-index.yml', 'noisemim',
           'configs', 'tools')


def load_setup():
    """``setup.py`` as a module (its ``setup()`` runs only as a script)."""
    spec = importlib.util.spec_from_file_location('noisemim_setup',
                                                  osp.join(ROOT, 'setup.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def without_scope(cfg):
    """A config's dicts and lists without mmengine's ``_scope_`` tags."""
    if isinstance(cfg, dict):
        return {k: without_scope(v) for k, v in cfg.items() if k != '_scope_'}
    if isinstance(cfg, (list, tuple)):
        return [without_scope(v) for v in cfg]
    return cfg


def run(cmd, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure, fail with its output."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f'{cmd} exited {result.returncode}\n{result.stdout[-3000:]}\n'
        f'{result.stderr[-3000:]}')
    return result


@pytest.fixture(scope='module')
def linked_checkout():
    """The checkout's ``noisemim/.mim`` links, made as ``setup.py develop``
    makes them (idempotent; git ignores them)."""
    made = load_setup().link_mim_files()
    assert [osp.basename(p) for p in made] == [
        'configs', 'tools', 'model-index.yml']
    assert all(osp.islink(p) for p in made)
    return osp.join(ROOT, 'noisemim')


def test_editable_install_resolves_noisemim_configs(linked_checkout,
                                                    tmp_path):
    # where mmengine looks for noisemim's .mim (noisemim/registry.py)
    located = get_installed_path(MODULE2PACKAGE['noisemim'])
    assert osp.realpath(located) == osp.realpath(linked_checkout)
    mine = tmp_path / 'mine.py'
    mine.write_text(f"_base_ = 'noisemim::{VIT_B}'\n"
                    "train_dataloader = dict(batch_size=4)\n")
    cfg = Config.fromfile(str(mine))
    source = Config.fromfile(osp.join(ROOT, 'configs', VIT_B))
    assert cfg.model._scope_ == 'noisemim'  # mmengine's tag of the base
    assert without_scope(cfg.model.to_dict()) == without_scope(
        source.model.to_dict())
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.default_scope == 'mmpretrain'


def test_a_noisemim_base_builds_and_steps_in_the_noisemim_scope(
        linked_checkout, tmp_path):
    """A config inheriting the tiny demo, read as ``tools/train.py`` reads it
    (``load_config``; ``mim train noisemim`` runs the same script from
    ``.mim/tools``): its dicts carry the ``noisemim`` scope, the model and
    the dataloader build from it (mmengine's own ``build_dataloader``, which
    passed the scope tag to the collate function before ``load_config``
    dropped it) and the model takes a finite loss step on a batch."""
    import argparse

    import torch
    from mmengine.registry import MODELS, DefaultScope
    from mmengine.runner import Runner

    from noisemim.utils.launch import load_config
    assert osp.samefile(
        osp.join(linked_checkout, '.mim', 'tools', 'train.py'),
        osp.join(ROOT, 'tools', 'train.py'))
    mine = tmp_path / 'mine.py'
    mine.write_text(textwrap.dedent("""\
        _base_ = 'noisemim::pretrain/noisemim_vit-tiny_demo.py'
        train_dataloader = dict(batch_size=2, num_workers=0,
                                persistent_workers=False)
        """))
    cfg = load_config(argparse.Namespace(
        config=str(mine), cfg_options=None, launcher='none',
        work_dir=str(tmp_path / 'work')))
    assert cfg.model._scope_ == 'noisemim'
    assert '_scope_' not in cfg.train_dataloader.collate_fn
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    assert type(model).__name__ == 'NoiseMIM'
    model.init_weights()
    batch = model.data_preprocessor(next(iter(loader)), True)
    losses = model(**batch, mode='loss')
    assert torch.isfinite(sum(v for k, v in losses.items()
                              if k.startswith('loss'))).item()


def test_wheel_ships_mim_and_resolves_noisemim_configs(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if osp.isdir(osp.join(ROOT, name)) else \
            shutil.copyfile
        kwargs = dict(ignore=shutil.ignore_patterns('__pycache__', '.mim')) \
            if copy is shutil.copytree else {}
        copy(osp.join(ROOT, name), str(src / name), **kwargs)
    pip = [sys.executable, '-m', 'pip', '--isolated',
           '--disable-pip-version-check']
    # the sdist (MANIFEST.in) carries what the wheel's .mim is made from
    run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(tmp_path)],
        cwd=str(src))
    sdist, = tmp_path.glob('noisemim-*.tar.gz')
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split('/')[0]
        members = {n[len(top) + 1:] for n in tar.getnames()}
    assert {'model-index.yml', f'configs/{VIT_B}', 'tools/train.py',
            'requirements/pretrain.txt', 'setup.py'} <= members
    run(pip + ['wheel', '-q', '--no-deps', '--no-index',
               '--no-build-isolation', '-w', str(tmp_path / 'dist'),
               str(src)], cwd=str(tmp_path))
    wheel, = (tmp_path / 'dist').glob('noisemim-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ('noisemim/.mim/model-index.yml',
                   f'noisemim/.mim/configs/{VIT_B}',
                   'noisemim/.mim/configs/pretrain/metafile.yml',
                   'noisemim/.mim/tools/train.py', 'noisemim/__init__.py'):
        assert needed in names, needed
    assert not [n for n in names if '__pycache__' in n]

    target = tmp_path / 'target'
    run(pip + ['install', '-q', '--no-deps', '--no-index', '--target',
               str(target), str(wheel)])
    (tmp_path / 'mine.py').write_text(f"_base_ = 'noisemim::{VIT_B}'\n")
    # -S: no site-packages .pth files (the editable checkout's path stays
    # out); -E: no PYTHONPATH. The wheel's target first, then the
    # environment's packages.
    script = textwrap.dedent(f"""\
        import json, sys
        sys.path[:] = [{str(target)!r}, *sys.path,
                       {sysconfig.get_paths()['purelib']!r}]
        import noisemim
        from mmengine.config import Config
        from mmengine.config.utils import MODULE2PACKAGE
        from mmengine.utils import get_installed_path
        cfg = Config.fromfile('mine.py')
        print(json.dumps(dict(
            noisemim=noisemim.__file__,
            installed=get_installed_path(MODULE2PACKAGE['noisemim']),
            model=cfg.model.to_dict(), scope=cfg.default_scope)))
        """)
    out = run([sys.executable, '-S', '-E', '-c', script], cwd=str(tmp_path),
              env=dict(os.environ, OMP_NUM_THREADS='1'))
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['noisemim'] == str(target / 'noisemim' / '__init__.py')
    assert result['installed'] == str(target / 'noisemim')
    assert not osp.islink(str(target / 'noisemim' / '.mim' / 'configs'))
    source = Config.fromfile(osp.join(ROOT, 'configs', VIT_B))
    assert without_scope(result['model']) == without_scope(
        source.model.to_dict())
    assert result['scope'] == 'mmpretrain'
