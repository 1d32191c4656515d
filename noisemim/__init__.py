"""noisemim: noise-and-mask pre-training for vision transformers (OpenMMLab plugin).

Importing this package registers its models, datasets and engine parts in
mmpretrain's registries (and mmengine's root ones). Its part for mmdet
(ViTDet's ``NoiseMIMSimpleFPN``) is registered too when mmdet imports;
pre-training needs neither mmdet, mmseg nor mmcv's compiled ops (see
:mod:`noisemim.registration`).
"""
from .version import __version__
from .utils.checkpoint import install_safe_globals

# torch.load of mmengine checkpoints with weights_only kept on (see utils/checkpoint)
install_safe_globals()
from . import datasets, engine, models  # noqa: F401,E402  (registration)
from .registration import register_available  # noqa: E402
from .registry import register_config_package  # noqa: E402

register_available()
register_config_package()  # `_base_ = 'noisemim::...'` (noisemim/registry.py)

__all__ = ['__version__']
