"""Where each loss term pushes: the gradient norm per term and per block.

A pre-training loss is a sum of terms (NoiseMIM: ``loss_mim``,
``loss_denoise``, ``loss_disruption``). Each term is back-propagated on its
own, on the same batch and the same corruption, and the norm of its gradient
is taken over the parameters of each part of the encoder:

* ``embed``: the ViT's stem (patch embedding, position embedding, class
  token, and pre-training extras such as ``mask_token``, ``time_embed``);
* ``block0``, ``block1``, ...: the encoder's blocks;
* ``norm``: the final norm (and any other backbone parameter);
* ``rest``: everything outside the backbone (heads, decoders).

``total`` is the gradient of the sum of the terms (what the optimiser sees,
before AdamW's per-parameter scaling). Norms are averaged over the batches.
"""
from collections import defaultdict
from typing import Dict, Iterable, List, Optional

import torch
from mmpretrain.structures import DataSample
from torch import Tensor, nn

from .probes import vit_encoder

TOTAL = 'total'
STEM_PREFIXES = ('patch_embed.', 'pos_embed', 'cls_token', 'mask_token',
                 'time_embed.', 'pre_norm.')


def parameter_groups(model: nn.Module) -> Dict[str, List[nn.Parameter]]:
    """The trainable parameters of a model, grouped by part of the encoder.

    Args:
        model (nn.Module): A pre-training model with a ViT ``backbone``.

    Returns:
        Dict[str, List[nn.Parameter]]: ``embed``, ``block<i>`` for every
        block, ``norm`` and ``rest`` (groups without a trainable parameter
        are left out), in that order.
    """
    vit = vit_encoder(model)
    groups: Dict[str, List[nn.Parameter]] = {'embed': []}
    groups.update({f'block{i}': [] for i in range(len(vit.layers))})
    groups.update(norm=[], rest=[])
    in_backbone = {id(p) for p in vit.parameters()}
    for name, param in vit.named_parameters():
        if not param.requires_grad:
            continue
        if name.startswith('layers.'):
            groups[f'block{int(name.split(".")[1])}'].append(param)
        elif name.startswith(STEM_PREFIXES):
            groups['embed'].append(param)
        else:
            groups['norm'].append(param)
    groups['rest'] = [
        p for p in model.parameters()
        if p.requires_grad and id(p) not in in_backbone
    ]
    return {name: params for name, params in groups.items() if params}


def loss_terms(model: nn.Module, inputs: Tensor) -> Dict[str, Tensor]:
    """The loss terms of one batch, as the model's ``loss`` returns them.

    Args:
        model (nn.Module): A pre-training model (mmpretrain
            ``BaseSelfSupervisor``).
        inputs (Tensor): ``(B, 3, H, W)`` normalised images.

    Returns:
        Dict[str, Tensor]: Every scalar tensor whose key contains ``loss``
        (the keys mmengine sums).
    """
    samples = [DataSample() for _ in range(inputs.shape[0])]
    losses = model.loss(inputs, samples)
    terms = {
        k: v
        for k, v in losses.items()
        if 'loss' in k and isinstance(v, Tensor) and v.dim() == 0
    }
    if not terms:
        raise ValueError(f'{type(model).__name__}.loss returned no scalar '
                         f'loss term; got keys {sorted(losses)}')
    return terms


def batch_loss_gradients(
        model: nn.Module,
        inputs: Tensor,
        groups: Optional[Dict[str, List[nn.Parameter]]] = None
) -> Dict[str, Dict[str, float]]:
    """Gradient norms of each loss term per parameter group, for one batch.

    Args:
        model (nn.Module): A pre-training model with a ViT ``backbone``.
        inputs (Tensor): ``(B, 3, H, W)`` normalised images.
        groups (dict, optional): :func:`parameter_groups` of the model.

    Returns:
        Dict[str, Dict[str, float]]: term (and ``total``) -> group -> the
        L2 norm of the term's gradient over the group's parameters (0 for
        parameters the term does not reach).
    """
    groups = groups or parameter_groups(model)
    params = [p for group in groups.values() for p in group]
    with torch.enable_grad():
        terms = loss_terms(model, inputs)
        terms[TOTAL] = torch.stack(list(terms.values())).sum()
        names = list(terms)
        norms = {}
        for i, name in enumerate(names):
            grads = torch.autograd.grad(
                terms[name],
                params,
                retain_graph=i < len(names) - 1,
                allow_unused=True)
            squares = iter([
                g.float().pow(2).sum() if g is not None else None
                for g in grads
            ])
            norms[name] = {}
            for group, members in groups.items():
                total = 0.
                for _ in members:
                    square = next(squares)
                    total += float(square) if square is not None else 0.
                norms[name][group] = total**.5
    return norms


def measure_loss_gradients(model: nn.Module,
                           batches: Iterable[Tensor],
                           seed: Optional[int] = 0,
                           train_mode: bool = True
                           ) -> Dict[str, Dict[str, float]]:
    """Gradient norms of each loss term per block, averaged over batches.

    Args:
        model (nn.Module): A pre-training model with a ViT ``backbone`` and a
            ``loss(inputs, data_samples)`` returning a dict of terms.
        batches (Iterable[Tensor]): ``(B, 3, H, W)`` normalised images.
        seed (int, optional): ``torch.manual_seed`` before the first batch,
            so that corruption drawn from torch's global generator (outside a
            Runner) is reproducible; None leaves the generator alone.
        train_mode (bool): Run the model in training mode (as in
            pre-training); it is put back in its mode afterwards.

    Returns:
        Dict[str, Dict[str, float]]: term (and ``total``) -> group
        (``embed``, ``block<i>``, ``norm``, ``rest``) -> mean L2 norm.
    """
    if seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.train(train_mode)
    groups = parameter_groups(model)
    sums: Dict[str, Dict[str, float]] = defaultdict(
        lambda: defaultdict(float))
    count = 0
    try:
        for inputs in batches:
            for term, norms in batch_loss_gradients(model, inputs,
                                                    groups).items():
                for group, norm in norms.items():
                    sums[term][group] += norm
            count += 1
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError('no batches to measure the gradients on')
    return {
        term: {group: total / count
               for group, total in norms.items()}
        for term, norms in sums.items()
    }
