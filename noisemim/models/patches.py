"""Images <-> sequences of flattened patches (MAE's ``nchpwq -> nhwpqc`` order)."""
from typing import Tuple

from torch import Tensor


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Split images into flattened, non-overlapping patches.

    Args:
        images (Tensor): ``(B, C, H, W)`` with ``H`` and ``W`` multiples of
            ``patch_size``.
        patch_size (int): The patch side in pixels.

    Returns:
        Tensor: ``(B, H * W / patch_size**2, patch_size**2 * C)``.
    """
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // p) * (W // p),
                                               p * p * C)


def unpatchify(patches: Tensor, patch_size: int,
               patch_resolution: Tuple[int, int]) -> Tensor:
    """Inverse of :func:`patchify`.

    Args:
        patches (Tensor): ``(B, h * w, patch_size**2 * C)``.
        patch_size (int): The patch side in pixels.
        patch_resolution (Tuple[int, int]): The patch grid ``(h, w)``.

    Returns:
        Tensor: ``(B, C, h * patch_size, w * patch_size)``.
    """
    B = patches.shape[0]
    (h, w), p = patch_resolution, patch_size
    x = patches.reshape(B, h, w, p, p, -1)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(B, -1, h * p, w * p)
