"""Pre-training's data preprocessor: the images go to the device, nothing else."""
from typing import Optional, Sequence, Union

from mmpretrain.models.utils import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS


@MODELS.register_module()
class NoiseMIMDataPreprocessor(SelfSupDataPreprocessor):
    """mmpretrain's ``SelfSupDataPreprocessor`` that moves only the images.

    The stock preprocessor also moves every ``DataSample`` of the batch to
    the device, one by one (512 per GPU and step for ViT-B: tens of
    milliseconds of host time per batch on a CPU), though pre-training reads
    none of them. Here the
    data samples stay on the host as the loader made them; the images are
    moved (asynchronously by default: with the loader's pinned memory the
    copy does not stall the host), converted and normalised as the stock one
    does.

    Args:
        mean, std, pad_size_divisor, pad_value, to_rgb, bgr_to_rgb,
            rgb_to_bgr: As ``SelfSupDataPreprocessor``.
        non_blocking (bool): Copy the images to the device asynchronously.
            Defaults to True.
    """

    def __init__(self,
                 mean: Optional[Sequence[Union[float, int]]] = None,
                 std: Optional[Sequence[Union[float, int]]] = None,
                 pad_size_divisor: int = 1,
                 pad_value: Union[float, int] = 0,
                 to_rgb: bool = False,
                 bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False,
                 non_blocking: bool = True) -> None:
        super().__init__(
            mean=mean,
            std=std,
            pad_size_divisor=pad_size_divisor,
            pad_value=pad_value,
            to_rgb=to_rgb,
            bgr_to_rgb=bgr_to_rgb,
            rgb_to_bgr=rgb_to_bgr,
            non_blocking=non_blocking)

    def forward(self, data: dict, training: bool = False) -> dict:
        """Move, convert and normalise the images; pass the data samples on.

        Args:
            data (dict): ``inputs`` and ``data_samples`` from the loader.
            training (bool): Unused, as in ``SelfSupDataPreprocessor``.

        Returns:
            dict: ``inputs`` on the device and ``data_samples`` as given.
        """
        if not isinstance(data, dict) or 'inputs' not in data:
            raise TypeError(
                'NoiseMIMDataPreprocessor takes a dict with `inputs` (the '
                f"loader's default_collate), got {type(data).__name__}")
        out = super().forward(
            dict(inputs=data['inputs'], data_samples=None), training)
        out['data_samples'] = data.get('data_samples')
        return out
