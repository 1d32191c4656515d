"""noisemim: noise-and-mask pre-training for vision transformers (OpenMMLab plugin).

Importing this package registers its models, datasets and engine parts in
mmpretrain's registries (and mmdet's / mmseg's where a part is meant for them).
"""
from .version import __version__
from .utils.checkpoint import install_safe_globals

# torch.load of mmengine checkpoints with weights_only kept on (see utils/checkpoint)
install_safe_globals()
from . import datasets, engine, models  # noqa: F401,E402  (registration)

__all__ = ['__version__']
