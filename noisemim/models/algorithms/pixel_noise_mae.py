"""The common part of the pixel-noise MAE baselines (DiffMAE, MaskDiT)."""
from typing import List, Optional, Sequence, Tuple, Union

from mmpretrain.models.selfsup import MAE
from torch import nn

from ..pixel_noise import check_t_range


class PixelNoiseMAE(MAE):
    """mmpretrain's MAE plus a noise level ``t ~ U[t_range]``.

    Subclasses name the part they need as ``required = (attribute, type)``,
    e.g. ``('neck', DiffMAEDecoder)``.

    Args:
        backbone (dict): The encoder config.
        neck (dict): The decoder config.
        head (dict): An ``MAEPretrainHead`` config (target and loss).
        t_range (Sequence[float]): Range of ``t``. Defaults to ``(0., 1.)``.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """
    required: Tuple[str, type] = ('backbone', nn.Module)

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 t_range: Sequence[float] = (0., 1.),
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        part, kind = self.required
        if not isinstance(getattr(self, part), kind):
            raise TypeError(f'{type(self).__name__} needs a {kind.__name__} '
                            f'{part}, got {type(getattr(self, part)).__name__}')
        self.t_range = check_t_range(t_range)
