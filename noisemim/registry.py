"""noisemim as an OpenMMLab scope: ``noisemim::`` configs and their registries.

A config may inherit one of noisemim's configs as
``_base_ = 'noisemim::pretrain/<name>.py'``: mmengine's ``Config`` reads it
from the installed package's ``noisemim/.mim/configs/`` (see setup.py), as it
does for ``mmpretrain::`` or ``mmdet::``. Two things make that work:

* mmengine 0.10.7 accepts ``<package>::`` only for the packages in its table
  ``mmengine.config.utils.MODULE2PACKAGE``; :func:`register_config_package`
  (run by ``import noisemim``) adds noisemim to it. So ``import noisemim``
  must come before ``Config.fromfile`` (``tools/train.py`` and
  ``tools/test.py`` do this first).
* mmengine tags every dict built from an inherited ``noisemim::`` file with
  ``_scope_='noisemim'`` and then builds it in the registries of the
  ``noisemim`` scope, which it imports from this module. noisemim's classes
  are registered in mmpretrain's registries (pre-training and
  classification are mmpretrain models), so the ``noisemim`` scope's
  registries are children of mmpretrain's: a name is looked up in
  mmpretrain's registries, then in mmengine's root ones.

Detection and segmentation configs are built in mmdet's or mmseg's scope
(their ``default_scope``); dicts they take from ``mmdet::`` or ``mmseg::``
bases keep that scope, but the others would be looked up in mmpretrain's, so
inherit noisemim's detection and segmentation configs by path, or name
noisemim's parts from your own config (docs/transfer.md).
"""
from mmengine.config import utils as config_utils
from mmengine.registry import Registry
from mmpretrain import registry as mmpretrain_registry

SCOPE = 'noisemim'


def _scope_registry(parent: Registry, *locations: str) -> Registry:
    """A registry of the ``noisemim`` scope under one of mmpretrain's.

    Args:
        parent (Registry): mmpretrain's registry of the same kind.
        *locations (str): The modules that fill it (imported on first use,
            as the parent's own are).

    Returns:
        Registry: The child registry (empty: lookups fall to the parent).
    """
    return Registry(parent.name, parent=parent, scope=SCOPE,
                    locations=[*locations, SCOPE])


RUNNERS = _scope_registry(mmpretrain_registry.RUNNERS, 'mmpretrain.engine')
RUNNER_CONSTRUCTORS = _scope_registry(mmpretrain_registry.RUNNER_CONSTRUCTORS,
                                      'mmpretrain.engine')
LOOPS = _scope_registry(mmpretrain_registry.LOOPS, 'mmpretrain.engine')
HOOKS = _scope_registry(mmpretrain_registry.HOOKS, 'mmpretrain.engine')
LOG_PROCESSORS = _scope_registry(mmpretrain_registry.LOG_PROCESSORS,
                                 'mmpretrain.engine')
OPTIMIZERS = _scope_registry(mmpretrain_registry.OPTIMIZERS, 'mmpretrain.engine')
OPTIM_WRAPPERS = _scope_registry(mmpretrain_registry.OPTIM_WRAPPERS,
                                 'mmpretrain.engine')
OPTIM_WRAPPER_CONSTRUCTORS = _scope_registry(
    mmpretrain_registry.OPTIM_WRAPPER_CONSTRUCTORS, 'mmpretrain.engine')
PARAM_SCHEDULERS = _scope_registry(mmpretrain_registry.PARAM_SCHEDULERS,
                                   'mmpretrain.engine')
DATASETS = _scope_registry(mmpretrain_registry.DATASETS, 'mmpretrain.datasets')
DATA_SAMPLERS = _scope_registry(mmpretrain_registry.DATA_SAMPLERS,
                                'mmpretrain.datasets')
TRANSFORMS = _scope_registry(mmpretrain_registry.TRANSFORMS, 'mmpretrain.datasets')
MODELS = _scope_registry(mmpretrain_registry.MODELS, 'mmpretrain.models')
MODEL_WRAPPERS = _scope_registry(mmpretrain_registry.MODEL_WRAPPERS,
                                 'mmpretrain.models')
WEIGHT_INITIALIZERS = _scope_registry(mmpretrain_registry.WEIGHT_INITIALIZERS,
                                      'mmpretrain.models')
TASK_UTILS = _scope_registry(mmpretrain_registry.TASK_UTILS, 'mmpretrain.models')
METRICS = _scope_registry(mmpretrain_registry.METRICS, 'mmpretrain.evaluation')
EVALUATORS = _scope_registry(mmpretrain_registry.EVALUATORS, 'mmpretrain.evaluation')
VISUALIZERS = _scope_registry(mmpretrain_registry.VISUALIZERS,
                              'mmpretrain.visualization')
VISBACKENDS = _scope_registry(mmpretrain_registry.VISBACKENDS,
                              'mmpretrain.visualization')


# What mmengine is told to locate for ``noisemim::``: this module, not the
# distribution. mmengine 0.10.7 finds ``<package>/.mim`` through
# ``get_installed_path``, which asks pkg_resources for the distribution's
# location first; for an editable install (PEP 660: what pip and setuptools
# >= 80 make, and so ``tools/setup_env.sh``) that is ``site-packages``, which
# holds no ``noisemim/`` folder. No distribution is named
# ``noisemim.registry``, so mmengine falls back to the import system, which
# gives the folder Python imports noisemim from, for every kind of install.
LOCATOR = f'{SCOPE}.registry'


def register_config_package() -> None:
    """Let mmengine's ``Config`` read ``noisemim::<path>`` bases.

    Adds ``noisemim`` to mmengine's table of the packages that ship configs
    under ``<package>/.mim`` (``MODULE2PACKAGE``), mapped to
    :data:`LOCATOR`, so that ``mmengine.utils.get_installed_path`` returns
    the ``noisemim`` folder that Python imports. Idempotent; an entry put
    there first is kept.
    """
    config_utils.MODULE2PACKAGE.setdefault(SCOPE, LOCATOR)


def untag_collate_fns(cfg: dict) -> None:
    """Drop the ``_scope_`` tag from the dataloaders' ``collate_fn`` dicts.

    A dataloader's ``collate_fn=dict(type='default_collate')`` taken from a
    ``noisemim::`` (or any ``<package>::``) base gets mmengine's ``_scope_``
    tag, and mmengine 0.10.7's ``Runner.build_dataloader`` passes every key
    but ``type`` to the function: ``default_collate() got an unexpected
    keyword argument '_scope_'``. A collate function is a plain function
    looked up in ``FUNCTIONS``, so the tag has nothing to select.

    Args:
        cfg (dict): The run's config, changed in place.
    """
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        collate_fn = loader.get('collate_fn') if isinstance(loader,
                                                            dict) else None
        if isinstance(collate_fn, dict):
            collate_fn.pop('_scope_', None)
