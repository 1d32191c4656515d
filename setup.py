"""Install noisemim as an OpenMMLab package.

Like mmpretrain, mmdet and mmseg, the installed package carries its configs,
tools and model index under ``noisemim/.mim/``, where mmengine's
``noisemim::<path>`` config prefix and openmim (``mim train``, ``mim search``)
look for them:

* a wheel or sdist build (``pip install .``, ``pip wheel .``) copies them into
  the built package (``build_py``), leaving the checkout untouched;
* an editable install (``pip install -e .``: ``develop`` or
  ``editable_wheel``) makes ``noisemim/.mim/`` in the checkout hold symbolic
  links to them, so edits show at once (copies where links cannot be made).
"""
import os
import os.path as osp
import re
import shutil
import warnings
from typing import Dict, List

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

ROOT = osp.dirname(osp.abspath(__file__))
# What openmim and mmengine read from <package>/.mim/.
MIM_FILES = ('configs', 'tools', 'model-index.yml')
# Not shipped inside .mim (caches, byte code).
MIM_IGNORE = shutil.ignore_patterns('__pycache__', '*.pyc')


def link_mim_files(package_dir: str = osp.join(ROOT, 'noisemim'),
                   source_dir: str = ROOT) -> List[str]:
    """Make ``<package_dir>/.mim/`` hold relative links to the configs,
    tools and model index of ``source_dir`` (an editable install).

    Idempotent: correct links are kept, anything else there (copies, other
    links) is replaced. Where links cannot be made (e.g. Windows without the
    privilege), the files are copied.

    Args:
        package_dir (str): The ``noisemim`` package folder.
        source_dir (str): The checkout holding ``configs/``, ``tools/`` and
            ``model-index.yml``.

    Returns:
        List[str]: The paths under ``.mim``.
    """
    mim_dir = osp.join(package_dir, '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    made = []
    for name in MIM_FILES:
        src, dst = osp.join(source_dir, name), osp.join(mim_dir, name)
        if not osp.exists(src):
            raise FileNotFoundError(f'{src} is missing: an OpenMMLab package '
                                    f'ships {", ".join(MIM_FILES)}')
        target = osp.relpath(src, mim_dir)
        made.append(dst)
        if osp.islink(dst) and os.readlink(dst) == target:
            continue  # already linked (nothing removed: safe to call often)
        _remove(dst)
        try:
            os.symlink(target, dst)
        except OSError:
            warnings.warn(f'cannot link {dst} to {src}; copying it instead')
            _copy(src, dst)
    return made


def copy_mim_files(package_dir: str, source_dir: str = ROOT) -> List[str]:
    """Copy the configs, tools and model index of ``source_dir`` into
    ``<package_dir>/.mim/`` (a wheel or sdist build).

    Args:
        package_dir (str): The ``noisemim`` folder of the build.
        source_dir (str): The source tree.

    Returns:
        List[str]: The files copied.
    """
    mim_dir = osp.join(package_dir, '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(source_dir, name), osp.join(mim_dir, name)
        if not osp.exists(src):
            raise FileNotFoundError(f'{src} is missing: an OpenMMLab package '
                                    f'ships {", ".join(MIM_FILES)}')
        _remove(dst)
        _copy(src, dst)
    return [
        osp.join(folder, file) for folder, _, files in os.walk(mim_dir)
        for file in files
    ]


def _remove(path: str) -> None:
    """Remove a file, link or folder, if there."""
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def _copy(src: str, dst: str) -> None:
    """Copy a file or a folder (without caches)."""
    if osp.isdir(src):
        shutil.copytree(src, dst, ignore=MIM_IGNORE)
    else:
        shutil.copyfile(src, dst)


class BuildPyWithMim(build_py):
    """``build_py`` that also puts ``.mim/`` into the built package: copies
    for a wheel, links in the checkout for an editable wheel (PEP 660)."""

    def run(self) -> None:
        super().run()
        if getattr(self, 'editable_mode', False):
            link_mim_files()
        else:
            self.mim_outputs = copy_mim_files(
                osp.join(self.build_lib, 'noisemim'))

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        return (super().get_outputs(include_bytecode) +
                list(getattr(self, 'mim_outputs', [])))


class DevelopWithMim(develop):
    """``setup.py develop`` (pip's legacy editable install) that also links
    ``noisemim/.mim/``. (setuptools >= 80 runs ``pip install -e`` here, which
    links through :class:`BuildPyWithMim`; linking again is harmless.)"""

    def run(self) -> None:
        super().run()
        if not getattr(self, 'uninstall', False):
            link_mim_files()


def version() -> str:
    """The version in ``noisemim/version.py`` (without importing noisemim)."""
    scope: dict = {}
    with open(osp.join(ROOT, 'noisemim', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def requirements(path: str) -> List[str]:
    """The requirement lines of a requirements file (comments dropped)."""
    with open(osp.join(ROOT, path)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def _name(requirement: str) -> str:
    """The distribution name of a requirement line, lower case."""
    return re.split(r'[<>=!~;\[ ]', requirement, maxsplit=1)[0].lower()


def extras() -> Dict[str, List[str]]:
    """Optional dependency sets: ``pip install noisemim[det]`` etc.

    ``install_requires`` is what ``import noisemim`` and pre-training need
    (``requirements/pretrain.txt`` without ``mmcv-lite``: mmcv itself, full
    or lite, is the user's choice because the full one must be built against
    the installed torch, see docs/install.md). ``det`` and ``seg`` add
    mmdet or mmseg and mmcv with its compiled ops; ``all`` is
    ``requirements.txt``.
    """
    full = requirements('requirements.txt')

    def pick(*names: str) -> List[str]:
        """The lines of ``requirements.txt`` for these distributions."""
        return [r for r in full if _name(r) in names]

    mmcv = pick('mmcv')
    return dict(
        pretrain=['mmcv-lite>=2.0.0,<2.2.0'],
        det=mmcv + pick('mmdet', 'pycocotools'),
        seg=mmcv + pick('mmsegmentation', 'ftfy', 'regex'),
        all=full,
    )


def install_requires() -> List[str]:
    """What ``import noisemim`` needs besides torch, torchvision and mmcv."""
    return [
        r for r in requirements('requirements/pretrain.txt')
        if _name(r) != 'mmcv-lite'
    ] + ['torch>=2.0,<2.14', 'torchvision']


if __name__ == '__main__':
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    setup(
        name='noisemim',
        version=version(),
        description='Noise-and-mask pre-training for vision transformers '
        '(an OpenMMLab plugin for mmpretrain, mmdet and mmseg)',
        long_description=readme,
        long_description_content_type='text/markdown',
        keywords='computer vision, self-supervised learning, masked image '
        'modeling, denoising, vision transformer, OpenMMLab',
        license='Apache-2.0',
        packages=find_packages(include=['noisemim', 'noisemim.*']),
        include_package_data=True,
        python_requires='>=3.9',
        install_requires=install_requires(),
        extras_require=extras(),
        classifiers=[
            'Development Status :: 3 - Alpha',
            'Intended Audience :: Science/Research',
            'Operating System :: OS Independent',
            'Programming Language :: Python :: 3',
            'Programming Language :: Python :: 3 :: Only',
            'Programming Language :: Python :: 3.11',  # the tested one
            'Topic :: Scientific/Engineering :: Artificial Intelligence',
            'Topic :: Scientific/Engineering :: Image Recognition',
        ],
        cmdclass=dict(build_py=BuildPyWithMim, develop=DevelopWithMim),
        zip_safe=False)
