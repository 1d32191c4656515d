"""What a pre-trained model restores: its corrupted input and reconstructions.

A *reconstructor* runs one model's corruption and restoration on a batch and
returns a :class:`Reconstruction` in the model's input space (normalised
images): predicted patches pasted into the original image where the loss
applies (MAE's "reconstruction + visible"). Predictions of per-patch
normalised pixels (``norm_pix``) are de-normalised with each patch's own mean
and standard deviation, as MAE's visualisation does.

Reconstructors exist for :class:`~noisemim.models.NoiseMIM` (with
``noise_ratio=0`` it is the SimMIM-style ViT; mmpretrain has SimMIM only for
Swin) and mmpretrain's ``MAE``. Other models (subclasses included) add theirs
with :func:`register_reconstructor`.
"""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
from mmpretrain.models import MAE
from torch import Tensor, nn

from ..models.algorithms.noisemim import NoiseMIM, normalize_patches
from ..models.backbones.noisemim_vit import NOISE_LAYER_PIXEL
from ..models.corruption import add_noise
from ..models.patches import patchify, unpatchify

NORM_PIX_EPS = 1e-6  # as normalize_patches and MAE's head


class Reconstruction(NamedTuple):
    """One batch's corruption and restoration, in the model's input space.

    Attributes:
        original (Tensor): ``(B, 3, H, W)`` the input images.
        corrupted (Tensor): ``(B, 3, H, W)`` the images as the encoder gets
            them where that is a picture (pixel noise applied); masked and
            feature-noised patches are marked by ``mask`` and ``noised``.
        mask (Tensor): ``(B, N)`` bool, the masked patches.
        noised (Tensor | None): ``(B, N)`` bool, the noised patches.
        noise_in_pixels (bool): The noise is in ``corrupted`` (pixel noise)
            rather than in the features of ``noised`` patches.
        mim (Tensor): ``(B, 3, H, W)`` the masked patches predicted.
        denoise (Tensor | None): ``(B, 3, H, W)`` the noised patches
            restored, or None without a pixel denoising head.
        patch_size (int): The patch side in pixels.
        errors (dict): Per image ``(B,)`` mean squared errors against the
            training targets: ``mim`` on ``mask``, ``denoise`` on ``noised``.
    """
    original: Tensor
    corrupted: Tensor
    mask: Tensor
    noised: Optional[Tensor]
    noise_in_pixels: bool
    mim: Tensor
    denoise: Optional[Tensor]
    patch_size: int
    errors: Dict[str, Tensor]


def denormalize_patches(pred: Tensor,
                        reference: Tensor,
                        eps: float = NORM_PIX_EPS) -> Tensor:
    """Invert ``normalize_patches`` with each reference patch's statistics.

    Args:
        pred (Tensor): ``(B, N, P)`` predictions of normalised patches.
        reference (Tensor): ``(B, N, P)`` the original patches.
        eps (float): Added to the variance, as in the target.

    Returns:
        Tensor: ``pred * sqrt(var + eps) + mean`` per patch.
    """
    mean = reference.mean(dim=-1, keepdim=True)
    var = reference.var(dim=-1, keepdim=True)
    return pred * (var + eps)**.5 + mean


def paste_patches(images: Tensor, pred: Tensor, where: Tensor, patch_size: int,
                  norm_pix: bool) -> Tuple[Tensor, Tensor]:
    """Put predicted patches into images where ``where`` is True.

    Args:
        images (Tensor): ``(B, C, H, W)`` the original images.
        pred (Tensor): ``(B, N, p*p*C)`` predictions for every patch, of
            normalised patches when ``norm_pix``.
        where (Tensor): ``(B, N)`` bool, the patches to replace.
        patch_size (int): The patch side ``p``.
        norm_pix (bool): De-normalise ``pred`` with each patch's statistics.

    Returns:
        Tuple[Tensor, Tensor]: The images with the predictions pasted, and
        the per-image mean squared error against the target on ``where``.
    """
    patches = patchify(images.float(), patch_size)
    target = normalize_patches(patches) if norm_pix else patches
    sq_err = (pred.float() - target).pow(2).mean(-1)
    w = where.float()
    error = (sq_err * w).sum(1) / w.sum(1).clamp_min(1)
    shown = denormalize_patches(pred.float(), patches) if norm_pix else pred
    out = torch.where(where.unsqueeze(-1), shown.float(), patches)
    grid = (images.shape[2] // patch_size, images.shape[3] // patch_size)
    return unpatchify(out, patch_size, grid), error


Reconstructor = Callable[[nn.Module, Tensor, int], Reconstruction]
RECONSTRUCTORS: Dict[type, Reconstructor] = {}


def register_reconstructor(model_type: type):
    """Register ``fn(model, inputs, seed) -> Reconstruction`` for a class.

    Args:
        model_type (type): The model class (exactly; not its subclasses).

    Returns:
        Callable: The decorator.
    """

    def register(fn: Reconstructor) -> Reconstructor:
        RECONSTRUCTORS[model_type] = fn
        return fn

    return register


def reconstructor_for(model: nn.Module) -> Reconstructor:
    """The reconstructor registered for the model's exact class.

    Subclasses are not matched: a subclass usually changes what its heads
    predict (DiffMAE and MaskDiT subclass MAE, NoiseMIMDTM subclasses
    NoiseMIM), so it must register its own view.

    Args:
        model (nn.Module): The model.

    Returns:
        Reconstructor: ``fn(model, inputs, seed) -> Reconstruction``.
    """
    if type(model) in RECONSTRUCTORS:
        return RECONSTRUCTORS[type(model)]
    supported = ', '.join(sorted(c.__name__ for c in RECONSTRUCTORS))
    raise TypeError(f'no reconstruction view for {type(model).__name__}; '
                    f'supported: {supported} (add one with '
                    'noisemim.analysis.register_reconstructor)')


@torch.no_grad()
def reconstruct(model: nn.Module,
                inputs: Tensor,
                seed: int = 0) -> Reconstruction:
    """Corrupt ``inputs`` as ``model`` was trained to and restore them.

    Args:
        model (nn.Module): A model with a registered reconstructor.
        inputs (Tensor): ``(B, 3, H, W)`` normalised images.
        seed (int): Seeds the corruption. Defaults to 0.

    Returns:
        Reconstruction: The corrupted input and the reconstructions.
    """
    return reconstructor_for(model)(model, inputs, seed)


@register_reconstructor(NoiseMIM)
def noisemim_reconstruction(model: NoiseMIM, inputs: Tensor,
                            seed: int) -> Reconstruction:
    """NoiseMIM: mask ``M`` and noised set ``S``; the MIM head restores ``M``,
    the denoise head ``S`` (when its target is pixels).

    Args:
        model (NoiseMIM): The model.
        inputs (Tensor): ``(B, 3, H, W)`` normalised images.
        seed (int): Seeds the corruption.

    Returns:
        Reconstruction: See :class:`Reconstruction`.
    """
    vit = model.backbone
    p = vit.patch_size
    generator = torch.Generator(inputs.device).manual_seed(seed)
    corruption, out = model.corrupted_forward(
        inputs, vit.sample_corruption(inputs, generator))
    corrupted = inputs
    pixel_noise = vit.noise_layer == NOISE_LAYER_PIXEL
    if model.noisy and pixel_noise:
        grid = (inputs.shape[2] // p, inputs.shape[3] // p)
        noisy, _ = add_noise(
            patchify(inputs, p), corruption.noised_index, corruption.alpha_bar,
            corruption.eps)
        corrupted = unpatchify(noisy, p, grid)
    mim, mim_error = paste_patches(inputs, model.mim_head(out.tokens),
                                   corruption.mask, p, model.norm_pix)
    errors = dict(mim=mim_error)
    denoise = None
    if model.noisy and model.denoise_target == 'pixel':
        denoise, errors['denoise'] = paste_patches(
            inputs, model.denoise_head(out.tokens), corruption.noised, p,
            model.norm_pix)
    return Reconstruction(
        original=inputs,
        corrupted=corrupted,
        mask=corruption.mask,
        noised=corruption.noised if model.noisy else None,
        noise_in_pixels=pixel_noise,
        mim=mim,
        denoise=denoise,
        patch_size=p,
        errors=errors)


@register_reconstructor(MAE)
def mae_reconstruction(model: MAE, inputs: Tensor,
                       seed: int) -> Reconstruction:
    """mmpretrain's MAE: the encoder sees the visible patches, the decoder
    predicts the masked ones.

    Args:
        model (MAE): The model.
        inputs (Tensor): ``(B, 3, H, W)`` normalised images.
        seed (int): Seeds MAE's random masking (drawn from torch's global
            RNG, which is restored afterwards).

    Returns:
        Reconstruction: See :class:`Reconstruction` (no noise, no denoise).
    """
    devices = [inputs.device] if inputs.device.type == 'cuda' else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        latent, mask, ids_restore = model.backbone(inputs)
    pred = model.neck(latent, ids_restore)
    mask = mask.bool()
    mim, error = paste_patches(inputs, pred, mask, model.head.patch_size,
                               model.head.norm_pix)
    return Reconstruction(
        original=inputs,
        corrupted=inputs,
        mask=mask,
        noised=None,
        noise_in_pixels=False,
        mim=mim,
        denoise=None,
        patch_size=model.head.patch_size,
        errors=dict(mim=error))
