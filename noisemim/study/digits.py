"""scikit-learn's handwritten digits as RGB images at a ViT's input size."""
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def load_digit_images(img_size: int,
                      num: Optional[int] = None) -> Tuple[Tensor, np.ndarray]:
    """The 1,797 labelled 8x8 digits of ``sklearn.datasets.load_digits``.

    The 17 grey levels are scaled to ``[0, 255]``, resized (bilinear) to
    ``img_size`` and repeated over 3 channels, like an image before a
    data preprocessor's normalisation.

    Args:
        img_size (int): Output side in pixels.
        num (int, optional): Keep the first ``num`` digits (the set cycles
            through the classes, so they stay balanced). Defaults to all.

    Returns:
        Tuple[Tensor, np.ndarray]: ``(n, 3, img_size, img_size)`` float
        images in ``[0, 255]`` and ``(n,)`` integer labels.
    """
    from sklearn.datasets import load_digits
    digits = load_digits()
    images, labels = digits.images, digits.target
    if num is not None:
        if num < 20:
            raise ValueError(f'num must be at least 20 digits, got {num}')
        images, labels = images[:num], labels[:num]
    x = torch.from_numpy(images).float()[:, None] * (255. / 16.)
    x = F.interpolate(
        x, size=(img_size, img_size), mode='bilinear', align_corners=False)
    return x.expand(-1, 3, -1, -1).contiguous(), labels
