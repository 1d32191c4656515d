"""Paper A's analyses of one trained cell: attention-head diversity (KL
between heads, per block; the paper's Figure 2) and the feature spectrum
(relative log amplitude per block), measured with ``noisemim.analysis``;
a health check, the scale (RMS) of the residual stream per block; and the
gradient norm each loss term sends into each block (on corrupted inputs, as
in pre-training)."""
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from ..analysis.head_diversity import HeadDiversity, per_head_kl
from ..analysis.loss_gradients import measure_loss_gradients
from ..analysis.probes import probe_encoder
from ..analysis.spectrum import SpectrumMeter, tokens_to_feature_map
from .probe import normalize


@torch.no_grad()
def analyze_cell(model: nn.Module,
                 images: Tensor,
                 batch_size: int = 64) -> Dict[str, Dict[str, List[float]]]:
    """Head diversity and feature spectrum of every block on clean images.

    Args:
        model (nn.Module): A model with a ViT ``backbone``.
        images (Tensor): ``(n, 3, H, W)`` ``uint8`` images.
        batch_size (int): Images per forward pass. Defaults to 64.

    Returns:
        dict: ``head_kl``: block (as a string, for JSON) -> each head's mean
        KL divergence to the other heads; ``spectrum``: block ->
        ``Delta log amplitude`` from frequency 0 to the highest;
        ``stream_rms``: block -> root mean square of the patch tokens'
        residual stream at the block's output (over channels, tokens and
        images), which exposes a stream that grows out of scale.
    """
    was_training = model.training
    model.eval()
    heads, spectrum = HeadDiversity(), SpectrumMeter()
    square_sums, count = 0., 0
    try:
        for batch in images.split(batch_size):
            probe = probe_encoder(model, normalize(model, batch))
            blocks = list(range(len(probe.attention)))
            heads.update(blocks, probe.attention)
            patches = [f[:, probe.num_extra_tokens:] for f in probe.features]
            spectrum.update(blocks, [
                tokens_to_feature_map(f, probe.patch_resolution)
                for f in patches
            ])
            square_sums = square_sums + torch.stack(
                [f.float().pow(2).mean(-1).sum() for f in patches])
            count += patches[0].shape[0] * patches[0].shape[1]
    finally:
        model.train(was_training)
    return dict(
        head_kl={
            str(b): per_head_kl(kl).tolist()
            for b, kl in heads.compute().items()
        },
        spectrum={
            str(b): profile.tolist()
            for b, profile in spectrum.compute().items()
        },
        stream_rms={
            str(b): rms
            for b, rms in enumerate((square_sums / count).sqrt().tolist())
        })


def cell_loss_gradients(model: nn.Module,
                        images: Tensor,
                        batch_size: int = 16,
                        seed: Optional[int] = 0) -> Dict[str, Dict[str, float]]:
    """The gradient norm of each loss term per block, on ``images``.

    Args:
        model (nn.Module): A pre-training model with a ViT ``backbone``.
        images (Tensor): ``(n, 3, H, W)`` ``uint8`` images.
        batch_size (int): Images per loss evaluation (the study's training
            batch). Defaults to 16.
        seed (int, optional): See :func:`measure_loss_gradients`.

    Returns:
        dict: term (and ``total``) -> ``embed``, ``block<i>``, ``norm``,
        ``rest`` -> mean gradient norm over the batches.
    """
    batches = (normalize(model, b) for b in images.split(batch_size))
    return measure_loss_gradients(model, batches, seed=seed)
