"""noisemim: noise-and-mask pre-training for vision transformers (OpenMMLab plugin).

Importing this package registers its models, datasets and engine parts in
mmpretrain's registries (and mmengine's root ones). Its parts for mmdet
(ViTDet's ``SimpleFPN``, ``LN2d``) are registered too when mmdet imports;
pre-training needs neither mmdet, mmseg nor mmcv's compiled ops (see
:mod:`noisemim.registration`).
"""
from .version import __version__
from .utils.checkpoint import install_safe_globals

# torch.load of mmengine checkpoints with weights_only kept on (see utils/checkpoint)
install_safe_globals()
from . import datasets, engine, models  # noqa: F401,E402  (registration)
from .registration import register_available  # noqa: E402

register_available()

__all__ = ['__version__']
