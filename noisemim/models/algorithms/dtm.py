"""DTM: masked image modeling of a frozen teacher's morphed tokens.

Kim, Heo and Han, "Morphing Tokens Draw Strong Masked Image Models"
(arXiv 2401.00254), as its official code does it:

1. the **student** (a ViT with a mask token in the encoder) sees the image
   with a block-wise mask (75 of 196 patches);
2. the frozen **teacher** (CLIP ViT-B/16, patch tokens after ``ln_post``,
   projected to 512-d) encodes the clean image;
3. ``L = 2`` times, the teacher's tokens are **morphed** into groups (a source
   matrix ``S``, see :mod:`noisemim.models.morphing`); a linear head on all
   patch tokens predicts the teacher's tokens, and predictions and targets
   are averaged within the groups;
4. the loss is smooth-L1 (``beta = 2``, mean over channels) over all ``N``
   tokens, averaged over the ``L`` morphings.
"""
from typing import Dict, List, Optional, Union

from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import Tensor

from ..backbones.noisemim_vit import NoiseMIMViT
from ..block_masking import BlockwiseMaskSampler, mask_only_corruption
from ..heads.morphing_head import MorphingHead
from ..morphing import DynamicTokenMorphing
from ..teachers import FrozenTeacher


def build_teacher(teacher: dict) -> FrozenTeacher:
    """Build a frozen teacher (a missing file fails here, before anything
    else is built).

    Args:
        teacher (dict): A teacher config (``ViTTeacher``, ``TimmTeacher``).

    Returns:
        FrozenTeacher: The teacher.
    """
    module = MODELS.build(teacher)
    if not isinstance(module, FrozenTeacher):
        raise TypeError(f'teacher must be a FrozenTeacher (ViTTeacher, '
                        f'TimmTeacher), got {type(module).__name__}')
    return module


def check_head(name: str, head, student: NoiseMIMViT,
               teacher: FrozenTeacher) -> None:
    """The head must map the student's width to the teacher's."""
    if not isinstance(head, MorphingHead):
        raise TypeError(f'{name} must be a MorphingHead, got '
                        f'{type(head).__name__}')
    width_in = head.predictor.in_features
    width_out = head.predictor.out_features
    if width_in != student.embed_dims:
        raise ValueError(f'{name}.in_channels must be the student width '
                         f'{student.embed_dims}, got {width_in}')
    if width_out != teacher.out_channels:
        raise ValueError(f'{name}.out_channels must be the teacher width '
                         f'{teacher.out_channels}, got {width_out}')


@MODELS.register_module()
class DTM(BaseSelfSupervisor):
    """Dynamic Token Morphing pre-training.

    Args:
        backbone (dict): The student, a :class:`NoiseMIMViT` config with
            ``noise_ratio=0`` (its own mask settings are unused: the mask is
            block-wise, see ``mask``).
        head (dict): A :class:`MorphingHead` from the student's width to the
            teacher's.
        teacher (dict): A frozen teacher config (:class:`ViTTeacher` or
            :class:`TimmTeacher`) with a local ``checkpoint``.
        morphing (dict): :class:`DynamicTokenMorphing` arguments. Defaults to
            DTM's (``num_merge ~ U{0..196}``, ``iters ~ U{1..14}``, ``L=2``,
            the first patch never merged).
        mask (dict): :class:`BlockwiseMaskSampler` arguments. Defaults to 75
            patches in blocks of at least 16.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config (never touches the
            teacher, which reloads its file).
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 teacher: dict,
                 morphing: Optional[dict] = None,
                 mask: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        teacher = build_teacher(teacher)
        super().__init__(
            backbone=backbone,
            head=head,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        student = self.backbone
        if not isinstance(student, NoiseMIMViT):
            raise TypeError('DTM needs a NoiseMIMViT student backbone, got '
                            f'{type(student).__name__}')
        if student.corruption_sampler.noise_ratio != 0:
            raise ValueError(
                'The DTM student adds no noise: set backbone.noise_ratio=0, '
                f'got {student.corruption_sampler.noise_ratio!r}')
        check_head('head', self.head, student, teacher)
        self.teacher = teacher
        self.morphing = DynamicTokenMorphing(**(morphing or {}))
        self.mask_sampler = BlockwiseMaskSampler(**(mask or {}))
        h, w = student.patch_resolution
        if self.mask_sampler.num_masking_patches >= h * w:
            raise ValueError(
                f'mask.num_masking_patches='
                f'{self.mask_sampler.num_masking_patches} must be smaller '
                f'than the {h * w} patches of the student')

    def extract_feat(self, inputs: Tensor):
        """Features of clean images, as the downstream backbone gives them."""
        return self.backbone(inputs)

    def loss(self, inputs: Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, Tensor]:
        """The DTM loss of a batch.

        Args:
            inputs (Tensor): ``(B, 3, H, W)`` normalised images.
            data_samples (List[DataSample]): Unused.

        Returns:
            Dict[str, Tensor]: ``loss_dtm``.
        """
        student = self.backbone
        grid = (inputs.shape[2] // student.patch_size,
                inputs.shape[3] // student.patch_size)
        mask = self.mask_sampler(inputs.shape[0], grid, inputs.device)
        corruption = mask_only_corruption(
            mask, student.embed_dims, self.mask_sampler.num_masking_patches)
        tokens = student(inputs, corruption).tokens
        target = self.teacher(inputs)
        sources = self.morphing(target)
        return dict(loss_dtm=self.head.loss(tokens, target, sources))
