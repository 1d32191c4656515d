"""Images for the analyses: the embedded photographs or a folder, loaded with
mmpretrain's transforms and normalised by the model's own data preprocessor."""
import os
import os.path as osp
from typing import Iterator, List, Optional, Tuple

import torch
from mmcv.transforms import Compose
from mmpretrain.registry import TRANSFORMS
from torch import Tensor, nn
from tqdm import tqdm

from ..datasets.embedded_photos import PHOTOS, EmbeddedPhotos
from ..datasets.image_folder import resolve_layout
from .probes import vit_encoder

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def image_paths(folder: Optional[str] = None,
                num_images: Optional[int] = None) -> List[str]:
    """The image files to analyse, sorted by name.

    Args:
        folder (str, optional): A folder of images in any nesting, or an
            ImageNet-layout folder (its ``train/``); defaults to the
            photographs that ship with scikit-image (:data:`PHOTOS`).
        num_images (int, optional): Keep only the first ones.

    Returns:
        List[str]: The paths.
    """
    if folder is None:
        root = EmbeddedPhotos.data_dir()
        paths = [
            osp.join(root, n) for n in sorted(PHOTOS)
            if osp.exists(osp.join(root, n))
        ]
    else:
        if not osp.isdir(folder):
            raise FileNotFoundError(f'image folder {folder!r} does not exist')
        # the folders pre-training reads: ImageNet layout (its train/) or
        # images in any nesting (noisemim.datasets.NoiseMIMImageFolder)
        root = osp.join(folder, resolve_layout(folder)[0])
        paths = sorted(
            osp.join(d, n) for d, _, names in os.walk(root, followlinks=True)
            for n in names
            if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith('.'))
    if num_images is not None:
        if num_images < 1:
            raise ValueError(f'num_images must be >= 1, got {num_images}')
        paths = paths[:num_images]
    if not paths:
        raise FileNotFoundError(
            f'no images ({", ".join(IMAGE_EXTENSIONS)}) found in '
            f'{folder or EmbeddedPhotos.data_dir()}')
    return paths


def input_size(model: nn.Module) -> Tuple[int, int]:
    """The image size ``(H, W)`` the model's ViT was built for.

    Args:
        model (nn.Module): A model with a ViT ``backbone``.

    Returns:
        Tuple[int, int]: The patch grid times the patch size.
    """
    vit = vit_encoder(model)
    stride = vit.patch_embed.projection.stride
    return (vit.patch_resolution[0] * stride[0],
            vit.patch_resolution[1] * stride[1])


def eval_pipeline(size: Tuple[int, int]) -> Compose:
    """mmpretrain's evaluation transforms: resize the short edge, centre crop.

    Args:
        size (Tuple[int, int]): The output ``(H, W)``.

    Returns:
        Compose: Loads a file and packs a ``(3, H, W)`` uint8 BGR tensor.
    """
    return Compose([
        TRANSFORMS.build(t) for t in (
            dict(type='LoadImageFromFile', color_type='color'),
            dict(
                type='ResizeEdge',
                scale=max(size),
                edge='short',
                backend='pillow',
                interpolation='bicubic'),
            dict(type='CenterCrop', crop_size=(size[1], size[0])),
            dict(type='PackInputs'),
        )
    ])


def image_batches(model: nn.Module,
                  paths: List[str],
                  batch_size: int = 8,
                  desc: Optional[str] = None) -> Iterator[Tensor]:
    """Load, crop and normalise images as the model's data preprocessor does,
    with a progress bar.

    Args:
        model (nn.Module): The model (its ``data_preprocessor`` normalises).
        paths (List[str]): Image files.
        batch_size (int): Images per batch. Defaults to 8.
        desc (str, optional): The progress bar's label; None hides the bar.

    Yields:
        Tensor: ``(b, 3, H, W)`` normalised images, on the model's device.
    """
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}')
    pipeline = eval_pipeline(input_size(model))
    with tqdm(
            total=len(paths), desc=desc, unit='img', disable=desc
            is None) as bar:
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([
                pipeline(dict(img_path=p))['inputs']
                for p in paths[start:start + batch_size]
            ])
            yield model.data_preprocessor(
                dict(inputs=batch, data_samples=None),
                training=False)['inputs']
            bar.update(batch.shape[0])


def to_display(inputs: Tensor, model: nn.Module) -> Tensor:
    """Undo the data preprocessor: normalised images -> RGB in ``[0, 1]``.

    Args:
        inputs (Tensor): ``(B, 3, H, W)`` normalised images.
        model (nn.Module): The model whose ``data_preprocessor`` made them.

    Returns:
        Tensor: ``(B, H, W, 3)`` RGB, clipped to ``[0, 1]``.
    """
    pre = model.data_preprocessor
    images = inputs.float()
    if getattr(pre, '_enable_normalize', False):
        images = images * pre.std + pre.mean
    # mmengine/SelfSup preprocessors: _channel_conversion; mmpretrain's
    # ClsDataPreprocessor: to_rgb.
    to_rgb = getattr(pre, '_channel_conversion', getattr(pre, 'to_rgb', False))
    if not to_rgb:
        images = images.flip(1)  # loaded as BGR and not converted
    return (images / 255.).clamp(0, 1).permute(0, 2, 3, 1).cpu()
