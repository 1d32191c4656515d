"""JPEG decoding on the training device: the loader's workers read bytes only.

The CPU pipeline of the pre-training configs (``LoadImageFromFile``,
``RandomResizedCrop`` with Pillow's antialiased bicubic, ``RandomFlip``)
spends ~8.6 ms of a core per image (docs/gpu.md), so a GPU that trains ~3,000
images/s needs ~26 cores. Here the workers do what needs no pixels:

* :class:`LoadImageBytes` reads the file and its header (size, format);
* :class:`RandomResizedCropParams` draws ``RandomResizedCrop``'s box from
  the size alone, with mmpretrain's own code (same distribution, and the
  same numbers for the same numpy state);
* :class:`RandomFlipFlag` draws ``RandomFlip``'s decision, with mmcv's code;
* :class:`PackEncodedInputs` packs bytes, box and flag;

and :class:`DeviceDecodeDataPreprocessor` decodes the batch with
``torchvision.io.decode_jpeg`` on the model's device (nvJPEG on CUDA), crops,
resizes with antialiased bicubic (torch's, made to match Pillow's), flips and
normalises there. Files the device decoder may not read as the CPU path
does (not JPEG, CMYK, an EXIF rotation) are decoded in the worker with the
CPU path's decoder and travel as pixels; only the crop, resize and flip of
them run on the device.

Config: ``configs/_base_/datasets/imagenet_bs512_noisemim_device-decode.py``.
"""
import io
from typing import List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmcv.transforms import BaseTransform
from mmcv.transforms import RandomFlip as MMCVRandomFlip
from mmengine.fileio import get as read_file
from mmengine.model import BaseDataPreprocessor
from mmengine.registry import FUNCTIONS
from mmpretrain.datasets.transforms import RandomResizedCrop
from mmpretrain.registry import MODELS, TRANSFORMS
from mmpretrain.structures import DataSample
from PIL import Image
from torch import Tensor

EXIF_ORIENTATION = 0x0112
# What nvJPEG decodes as libjpeg-turbo (the CPU path's cv2) does.
DEVICE_MODES = ('L', 'RGB')


@TRANSFORMS.register_module()
class LoadImageBytes(BaseTransform):
    """Read an image file's bytes and its size, without decoding it.

    A baseline JPEG (Pillow's header: format JPEG, mode L or RGB, no EXIF
    rotation) is kept as bytes in ``results['img_bytes']`` for the device
    to decode. Any other file is decoded here as ``LoadImageFromFile`` does
    (mmcv's cv2 decoder, which applies the EXIF rotation), as RGB pixels in
    ``results['img']``.

    Added keys: ``img_bytes`` or ``img``, ``img_shape``, ``ori_shape``
    (``(h, w)``).

    Args:
        backend_args (dict, optional): mmengine file backend arguments.
    """

    def __init__(self, backend_args: Optional[dict] = None) -> None:
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        data = read_file(results['img_path'], backend_args=self.backend_args)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            plain = (image.format == 'JPEG' and image.mode in DEVICE_MODES
                     and image.getexif().get(EXIF_ORIENTATION, 1) == 1)
        if plain:
            results['img_bytes'] = np.frombuffer(data, np.uint8)
        else:
            img = mmcv.imfrombytes(data, flag='color', channel_order='rgb')
            results['img'] = img
            height, width = img.shape[:2]
        results['img_shape'] = results['ori_shape'] = (height, width)
        return results


@TRANSFORMS.register_module()
class RandomResizedCropParams(RandomResizedCrop):
    """mmpretrain's ``RandomResizedCrop``, drawing the box only.

    ``rand_crop_params`` (the draw of the CPU transform) runs on the image's
    size; ``results['crop_box']`` is ``(top, left, height, width)`` and
    ``results['crop_size']`` the output ``(height, width)``. The crop and the
    resize run on the device (:class:`DeviceDecodeDataPreprocessor`).

    Args:
        **kwargs: As ``RandomResizedCrop``; ``interpolation`` must be
            ``'bicubic'`` or ``'bilinear'`` (antialiased on the device).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.interpolation not in ('bicubic', 'bilinear'):
            raise ValueError('RandomResizedCropParams resizes on the device '
                             "with 'bicubic' or 'bilinear', got "
                             f'interpolation={self.interpolation!r}')

    def transform(self, results: dict) -> dict:
        height, width = results['img_shape'][:2]
        size_only = np.broadcast_to(np.zeros((), np.uint8), (height, width))
        results['crop_box'] = np.array(self.rand_crop_params(size_only),
                                       dtype=np.int64)
        results['crop_size'] = tuple(self.scale)  # (height, width)
        results['crop_interpolation'] = self.interpolation
        return results


@TRANSFORMS.register_module()
class RandomFlipFlag(MMCVRandomFlip):
    """mmcv's ``RandomFlip``, drawing the decision only (``results['flip']``);
    the device flips. Horizontal flips only.

    Args:
        **kwargs: As mmcv's ``RandomFlip``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.direction != 'horizontal':
            raise ValueError('RandomFlipFlag flips horizontally only, got '
                             f'direction={self.direction!r}')

    def _flip(self, results: dict) -> None:
        """Nothing to flip yet: ``flip`` and ``flip_direction`` are set."""


@TRANSFORMS.register_module()
class PackEncodedInputs(BaseTransform):
    """Pack one sample for :class:`DeviceDecodeDataPreprocessor`.

    ``inputs`` is a dict: ``bytes`` (1-D uint8, the JPEG file) or ``img``
    (``(3, H, W)`` uint8 RGB pixels), ``crop_box`` (``(4,)`` int64),
    ``flip`` (bool); ``data_samples`` an empty ``DataSample`` (pre-training
    reads no labels). Collate with :func:`encoded_collate`.
    """

    def transform(self, results: dict) -> dict:
        inputs = dict(crop_box=torch.from_numpy(results['crop_box']),
                      flip=bool(results.get('flip', False)))
        if 'img_bytes' in results:
            inputs['bytes'] = torch.from_numpy(results['img_bytes'].copy())
        else:
            img = np.ascontiguousarray(results['img'].transpose(2, 0, 1))
            inputs['img'] = torch.from_numpy(img)
        sample = DataSample()
        sample.set_metainfo(dict(img_shape=results['crop_size'],
                                 ori_shape=results['ori_shape']))
        return dict(inputs=inputs, data_samples=sample)


@FUNCTIONS.register_module()
def encoded_collate(data_batch: Sequence[dict]) -> dict:
    """Collate :class:`PackEncodedInputs` samples: lists, not stacks.

    The files differ in length, and a sample carries either ``bytes`` or
    ``img``, so the inputs stay one dict per sample.

    Args:
        data_batch (Sequence[dict]): The samples.

    Returns:
        dict: ``inputs`` (list of dicts) and ``data_samples`` (list).
    """
    return dict(inputs=[d['inputs'] for d in data_batch],
                data_samples=[d['data_samples'] for d in data_batch])


def decode_images(items: Sequence[dict], device: torch.device) -> List[Tensor]:
    """Every sample's ``(3, H, W)`` uint8 RGB image on ``device``.

    The JPEG files are decoded in one batched ``decode_jpeg`` call on
    ``device`` (on CUDA, nvJPEG; its host part runs in this process).

    Args:
        items (Sequence[dict]): :class:`PackEncodedInputs`'s inputs.
        device (torch.device): Where to decode.

    Returns:
        List[Tensor]: The images, in order.
    """
    from torchvision.io import ImageReadMode, decode_jpeg
    encoded = [i for i, item in enumerate(items) if 'bytes' in item]
    images: List[Optional[Tensor]] = [None] * len(items)
    if encoded:
        files = [items[i]['bytes'] for i in encoded]
        device_arg = device if device.type == 'cuda' else 'cpu'
        decoded = decode_jpeg(files, mode=ImageReadMode.RGB,
                              device=device_arg)
        for i, img in zip(encoded, decoded):
            images[i] = img.to(device)
    for i, item in enumerate(items):
        if images[i] is None:
            if 'img' not in item:
                raise KeyError(f"sample {i} has neither 'bytes' nor 'img' "
                               f'(keys: {sorted(item)}); pack it with '
                               'PackEncodedInputs')
            images[i] = item['img'].to(device, non_blocking=True)
    return images


def crop_resize(image: Tensor, box: Sequence[int], size: Tuple[int, int],
                interpolation: str = 'bicubic') -> Tensor:
    """``RandomResizedCrop``'s crop and resize of one image, on its device.

    Antialiased like Pillow's resize (torch's ``antialias=True`` follows
    Pillow's filter); not yet rounded and clamped to uint8 values as
    Pillow's output is (:class:`DeviceDecodeDataPreprocessor` does that for
    the whole batch, one kernel instead of two per image).

    Args:
        image (Tensor): ``(C, H, W)`` uint8.
        box (Sequence[int]): ``(top, left, height, width)``.
        size (Tuple[int, int]): Output ``(height, width)``.
        interpolation (str): ``'bicubic'`` or ``'bilinear'``.

    Returns:
        Tensor: ``(C, height, width)`` float32.
    """
    top, left, height, width = (int(v) for v in box)
    crop = image[None, :, top:top + height, left:left + width].float()
    out = F.interpolate(crop, size=tuple(size), mode=interpolation,
                        align_corners=False, antialias=True)
    return out[0]


@MODELS.register_module()
class DeviceDecodeDataPreprocessor(BaseDataPreprocessor):
    """Decode, crop, resize, flip and normalise a batch on the model's device.

    The counterpart of ``SelfSupDataPreprocessor`` for batches of
    :class:`PackEncodedInputs`: same ``mean``, ``std`` and ``to_rgb``
    meaning (``to_rgb=True``: the model sees RGB, as the CPU path's BGR
    images converted). The data samples stay where they are (pre-training
    reads none).

    Args:
        mean (Sequence[float]): Per-channel mean, RGB order when ``to_rgb``.
        std (Sequence[float]): Per-channel std, same order.
        to_rgb (bool): The model's channel order is RGB (else BGR).
            Defaults to True.
        size (Tuple[int, int], optional): Output ``(height, width)``; by
            default each sample's ``crop_size`` metainfo.
        interpolation (str): ``'bicubic'`` or ``'bilinear'``. Defaults to
            ``'bicubic'``.
        non_blocking (bool): Copy pixel fallbacks asynchronously.
    """

    def __init__(self,
                 mean: Sequence[float],
                 std: Sequence[float],
                 to_rgb: bool = True,
                 size: Optional[Tuple[int, int]] = None,
                 interpolation: str = 'bicubic',
                 non_blocking: bool = False) -> None:
        super().__init__(non_blocking=non_blocking)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f'mean and std need 3 values, got {mean!r} and '
                             f'{std!r}')
        if interpolation not in ('bicubic', 'bilinear'):
            raise ValueError("interpolation must be 'bicubic' or "
                             f"'bilinear', got {interpolation!r}")
        self.to_rgb = to_rgb
        self.size = tuple(size) if size is not None else None
        self.interpolation = interpolation
        self.register_buffer('mean', torch.tensor(mean).view(-1, 1, 1),
                             False)
        self.register_buffer('std', torch.tensor(std).view(-1, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> dict:
        """Turn an :func:`encoded_collate`-d batch into normalised images.

        Args:
            data (dict): ``inputs`` (list of :class:`PackEncodedInputs`
                dicts) and ``data_samples``.
            training (bool): Unused (the augmentation was drawn by the
                workers).

        Returns:
            dict: ``inputs`` ``(B, 3, H, W)`` float, ``data_samples``.
        """
        items, samples = data['inputs'], data.get('data_samples')
        if not isinstance(items, (list, tuple)) or not items:
            raise TypeError('DeviceDecodeDataPreprocessor takes a list of '
                            'PackEncodedInputs dicts (collate_fn='
                            f"encoded_collate), got {type(items).__name__}")
        images = decode_images(items, self.device)
        out = []
        for i, (image, item) in enumerate(zip(images, items)):
            size = self.size or samples[i].metainfo['img_shape']
            out.append(crop_resize(image, item['crop_box'].tolist(), size,
                                   self.interpolation))
        batch = torch.stack(out).round_().clamp_(0, 255)  # Pillow's uint8
        flips = torch.tensor([bool(item['flip']) for item in items])
        if flips.any():
            flips = flips.to(self.device, non_blocking=True)
            batch = torch.where(flips.view(-1, 1, 1, 1), batch.flip(-1),
                                batch)
        if not self.to_rgb:
            batch = batch.flip(1)
        batch = (batch - self.mean) / self.std
        return dict(inputs=batch, data_samples=samples)
