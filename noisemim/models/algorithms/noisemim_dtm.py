"""NoiseMIM + DTM: NoiseMIM whose MIM head predicts morphed teacher tokens.

Neither paper has this combination. Everything of :class:`NoiseMIM` stays
(the SimMIM-style mask ``M``, the feature noise on ``S``, the denoise head, the
disruption loss); only ``L_mim`` changes: instead of the pixels of ``M``, the
MIM head (a :class:`MorphingHead`) predicts a frozen teacher's patch tokens,
compared after Dynamic Token Morphing as in :class:`DTM`.
"""
from typing import Optional

from mmpretrain.registry import MODELS
from torch import Tensor

from ..backbones.noisemim_vit import EncoderOutput
from ..corruption import Corruption
from ..morphing import DynamicTokenMorphing
from .dtm import build_teacher, check_head
from .noisemim import NoiseMIM

MIM_LOSS_TOKENS = ('masked', 'all')


@MODELS.register_module()
class NoiseMIMDTM(NoiseMIM):
    """NoiseMIM with morphed teacher tokens as the MIM target.

    Args:
        backbone (dict): A :class:`NoiseMIMViT` config.
        mim_head (dict): A :class:`MorphingHead` from the backbone's width to
            the teacher's.
        teacher (dict): A frozen teacher config with a local ``checkpoint``.
        morphing (dict, optional): :class:`DynamicTokenMorphing` arguments.
            Defaults to DTM's, as in :class:`DTM`.
        mim_loss_tokens (str): ``'masked'``: the loss covers the masked
            tokens ``M``, as NoiseMIM's ``L_mim`` does (the group averages
            still take in every member); ``'all'``: all tokens, as DTM does.
            Defaults to ``'masked'``.
        **kwargs: The other :class:`NoiseMIM` arguments (``denoise_head``,
            ``disruption``, ``denoise_target``, ...).
    """

    def __init__(self,
                 backbone: dict,
                 mim_head: dict,
                 teacher: dict,
                 morphing: Optional[dict] = None,
                 mim_loss_tokens: str = 'masked',
                 **kwargs) -> None:
        if mim_loss_tokens not in MIM_LOSS_TOKENS:
            raise ValueError(f'mim_loss_tokens must be one of '
                             f'{MIM_LOSS_TOKENS}, got {mim_loss_tokens!r}')
        teacher = build_teacher(teacher)
        super().__init__(backbone=backbone, mim_head=mim_head, **kwargs)
        check_head('mim_head', self.mim_head, self.backbone, teacher)
        self.teacher = teacher
        self.morphing = DynamicTokenMorphing(**(morphing or {}))
        self.mim_loss_tokens = mim_loss_tokens

    def _check_width(self, name: str, head, expected: int) -> None:
        """As NoiseMIM's, except for the MIM head (its width is the
        teacher's, checked by :func:`check_head`)."""
        if name != 'mim_head':
            super()._check_width(name, head, expected)

    def mim_loss(self, inputs: Tensor, pixels: Tensor, corruption: Corruption,
                 out: EncoderOutput) -> Tensor:
        """``L_mim`` against the teacher's morphed tokens of the clean image.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` normalised (clean) images.
            pixels (Tensor): Unused (the pixel target of NoiseMIM).
            corruption (Corruption): The batch's corruption.
            out (EncoderOutput): The corrupted encoder's output.

        Returns:
            Tensor: The morphed distillation loss.
        """
        target = self.teacher(inputs)
        sources = self.morphing(target)
        mask = corruption.mask if self.mim_loss_tokens == 'masked' else None
        return self.mim_head.loss(out.tokens, target, sources, mask)
