"""Frozen teachers: the ViTs whose patch tokens DTM distils, from local files.

A teacher maps normalised images ``(B, 3, H, W)`` to patch tokens
``(B, N, C)`` (the class token dropped). It never trains: no parameter needs
a gradient (mmengine's optimizer constructor leaves them out under a
``paramwise_cfg``, which every pre-training config here has; without one they
would sit in the optimizer and never get a gradient), it runs under
``no_grad``, it stays in eval mode whatever ``train()`` is asked, and
``init_weights()`` reloads its file, so an algorithm's ``init_cfg`` cannot
overwrite it. Nothing is ever
downloaded: the weights come from ``checkpoint``, a local file, loaded by
mmengine's ``load_checkpoint`` (strict, with torch's safe ``weights_only``
loading).

* :class:`ViTTeacher`: an mmpretrain ``VisionTransformer`` plus an optional
  projection (``tokens @ proj``), e.g. OpenAI CLIP's ViT-B/16 image tower
  converted by ``tools/model_converters/clip_to_teacher.py``.
* :class:`TimmTeacher`: a timm ViT from a saved ``state_dict()``, its head
  optionally applied to every patch token (timm's CLIP ViTs hold CLIP's
  projection there).
"""
import os
import os.path as osp
from typing import Optional

import torch
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import load_checkpoint
from mmpretrain.registry import MODELS
from torch import Tensor, nn

# OpenAI CLIP ViT-B/16's image tower in mmpretrain's VisionTransformer (as
# mmpretrain's CLIP configs build it, with CLIP's LayerNorm eps).
CLIP_VIT_B16 = dict(
    type='VisionTransformer',
    arch='b',
    img_size=224,
    patch_size=16,
    drop_rate=0.,
    pre_norm=True,
    norm_cfg=dict(type='LN', eps=1e-5),
    layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')))

CONVERTER = 'tools/model_converters/clip_to_teacher.py'


def missing_teacher_message(path: str) -> str:
    """The error for a teacher file that does not exist: what and how.

    Args:
        path (str): The ``checkpoint`` of the teacher config.

    Returns:
        str: Which file is expected and how to make one.
    """
    return (
        f'The teacher weights {osp.abspath(path)!r} do not exist. DTM needs '
        f'a local teacher file (nothing is downloaded). Make one from OpenAI '
        f'CLIP or open_clip weights of the same architecture:\n'
        f'  python {CONVERTER} ViT-B-16.pt {path}\n'
        f'(ViT-B-16.pt as OpenAI publishes it, or an open_clip / '
        f'clip.load(..., jit=False) state dict), or for a TimmTeacher save '
        f'timm.create_model(NAME, pretrained=True).state_dict() with '
        f'torch.save. For the CPU demo a random teacher will do:\n'
        f'  python {CONVERTER} --random CONFIG\n'
        f'Or point the config at your file: --cfg-options '
        f'model.teacher.checkpoint=/path/to/teacher.pth (see docs/dtm.md, "The teacher").')


class FrozenTeacher(BaseModule):
    """Base of the teachers: frozen, in eval mode, loaded from a local file.

    Subclasses build their modules, then call :meth:`_load_and_freeze`, and
    implement :meth:`encode`.

    Args:
        checkpoint (str): The local weights file.
    """

    def __init__(self, checkpoint: str) -> None:
        super().__init__(init_cfg=None)
        if not isinstance(checkpoint, str) or not osp.isfile(checkpoint):
            raise FileNotFoundError(missing_teacher_message(str(checkpoint)))
        self.checkpoint = checkpoint

    @property
    def out_channels(self) -> int:
        """The width of the tokens."""
        raise NotImplementedError

    def encode(self, images: Tensor) -> Tensor:
        """``(B, 3, H, W)`` images -> ``(B, N, C)`` patch tokens."""
        raise NotImplementedError

    def _load_and_freeze(self) -> None:
        self.load_weights()
        self.requires_grad_(False)
        self.train(False)

    def load_weights(self) -> None:
        """Load ``checkpoint`` strictly into the teacher's modules."""
        try:
            load_checkpoint(
                self._weights_module(),
                self.checkpoint,
                map_location='cpu',
                strict=True,
                logger='current')
        except (RuntimeError, KeyError) as err:
            raise RuntimeError(
                f'{self.checkpoint!r} does not fit {type(self).__name__}: '
                f'{err}\nIs it a teacher file for this architecture? Convert '
                f'CLIP weights with {CONVERTER} (see docs/dtm.md, "The teacher").') from err

    def _weights_module(self) -> nn.Module:
        """The module the file's keys are relative to."""
        return self

    @classmethod
    def random_state_dict(cls, **kwargs) -> dict:
        """Randomly initialised weights for a teacher built with
        ``kwargs``, with the keys of its files."""
        raise NotImplementedError

    def init_weights(self) -> None:
        """Reload the file: the weights are never randomly initialised."""
        self.load_weights()

    def train(self, mode: bool = True) -> 'FrozenTeacher':
        """Stay in eval mode (no dropout, fixed statistics) whatever ``mode``."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """The teacher's patch tokens, without gradient, in fp32.

        Args:
            images (Tensor): ``(B, 3, H, W)`` normalised images.

        Returns:
            Tensor: ``(B, N, out_channels)``.
        """
        return self.encode(images).float()


@MODELS.register_module()
class ViTTeacher(FrozenTeacher):
    """An mmpretrain ViT teacher, its final normalised patch tokens projected.

    The file holds ``vit.*`` (``VisionTransformer`` keys) and, with
    ``proj_channels``, ``proj`` (``(embed_dims, proj_channels)``, applied as
    ``tokens @ proj`` like CLIP's ``visual.proj``).

    Args:
        checkpoint (str): The local weights file.
        vit (dict): An mmpretrain ``VisionTransformer`` config; its
            ``out_type`` is set to ``'raw'``. Defaults to CLIP's ViT-B/16.
        proj_channels (int, optional): Width of the projection; None uses
            the ViT's tokens as they are. Defaults to 512 (CLIP ViT-B/16).
    """

    def __init__(self,
                 checkpoint: str,
                 vit: dict = CLIP_VIT_B16,
                 proj_channels: Optional[int] = 512) -> None:
        super().__init__(checkpoint)
        self.vit = MODELS.build(dict(vit, out_type='raw'))
        if not hasattr(self.vit, 'num_extra_tokens'):
            raise TypeError(f'ViTTeacher needs an mmpretrain VisionTransformer'
                            f', got {type(self.vit).__name__}')
        self.proj = None
        if proj_channels is not None:
            if not (isinstance(proj_channels, int) and proj_channels > 0):
                raise ValueError(f'proj_channels must be a positive integer '
                                 f'or None, got {proj_channels!r}')
            self.proj = nn.Parameter(
                torch.empty(self.vit.embed_dims, proj_channels))
        self._load_and_freeze()

    @classmethod
    def random_state_dict(cls,
                          vit: dict = CLIP_VIT_B16,
                          proj_channels: Optional[int] = 512) -> dict:
        """Random weights of this architecture (see
        :func:`save_random_teacher`)."""
        module = nn.Module()
        module.vit = MODELS.build(dict(vit, out_type='raw'))
        module.vit.init_weights()
        if proj_channels is not None:
            module.proj = nn.Parameter(
                torch.randn(module.vit.embed_dims, proj_channels) *
                module.vit.embed_dims**-0.5)
        return module.state_dict()

    @property
    def out_channels(self) -> int:
        return (self.vit.embed_dims
                if self.proj is None else self.proj.shape[1])

    def encode(self, images: Tensor) -> Tensor:
        tokens = self.vit(images)[-1][:, self.vit.num_extra_tokens:]
        return tokens if self.proj is None else tokens @ self.proj


@MODELS.register_module()
class TimmTeacher(FrozenTeacher):
    """A timm ViT teacher: ``forward_features`` patch tokens, optionally
    through the model's head (CLIP's projection in timm's CLIP ViTs).

    The file holds the model's own ``state_dict()`` keys. The model is built
    with ``pretrained=False``: timm downloads nothing.

    Args:
        checkpoint (str): The local weights file.
        model_name (str): A timm model name, e.g.
            ``'vit_base_patch16_clip_quickgelu_224.openai'``.
        model_kwargs (dict, optional): More ``timm.create_model`` arguments.
        project (bool): Apply the model's head to every patch token.
            Defaults to True.
    """

    def __init__(self,
                 checkpoint: str,
                 model_name: str,
                 model_kwargs: Optional[dict] = None,
                 project: bool = True) -> None:
        super().__init__(checkpoint)
        import timm
        self.model = timm.create_model(
            model_name, pretrained=False, **(model_kwargs or {}))
        head = self.model.get_classifier() if project else None
        if project and not isinstance(head, nn.Linear):
            raise ValueError(f'project=True needs a linear head, but '
                             f'{model_name} has {type(head).__name__}; set '
                             f'project=False or num_classes in model_kwargs.')
        self.project = project
        self._load_and_freeze()

    def _weights_module(self) -> nn.Module:
        return self.model

    @classmethod
    def random_state_dict(cls,
                          model_name: str,
                          model_kwargs: Optional[dict] = None,
                          project: bool = True) -> dict:
        """Random weights of this architecture (see
        :func:`save_random_teacher`)."""
        import timm
        return timm.create_model(
            model_name, pretrained=False, **(model_kwargs or {})).state_dict()

    @property
    def out_channels(self) -> int:
        if self.project:
            return self.model.get_classifier().out_features
        return self.model.num_features

    def encode(self, images: Tensor) -> Tensor:
        tokens = self.model.forward_features(images)
        tokens = tokens[:, self.model.num_prefix_tokens:]
        return self.model.get_classifier()(tokens) if self.project else tokens


def save_random_teacher(teacher: dict, path: str, seed: int = 0) -> str:
    """Write a randomly initialised teacher file for ``teacher``'s
    architecture (for the CPU demo and tests; not a real teacher).

    Args:
        teacher (dict): A teacher config; its ``checkpoint`` is ignored.
        path (str): Where to write.
        seed (int): Seeds the initialisation. Defaults to 0.

    Returns:
        str: ``path``.
    """
    cfg = dict(teacher)
    kind = MODELS.get(cfg.pop('type'))
    cfg.pop('checkpoint', None)
    torch.manual_seed(seed)
    state = kind.random_state_dict(**cfg)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    torch.save(dict(state_dict=state, meta=dict(note='random teacher')), path)
    return path
