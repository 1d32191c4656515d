"""The NoiseMIM encoder: mmpretrain's ViT plus what pre-training needs.

With no corruption, :class:`NoiseMIMViT` *is* mmpretrain's ``VisionTransformer``
(same forward, same state-dict keys). Pre-training adds a ``mask_token``, the
corruption sampler and, optionally, an embedding of the noise level
(``time_embed``); these are the only extra parameters and they are dropped on
transfer.
"""
import math
from typing import Callable, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS
from torch import Tensor, nn
from torch.profiler import record_function

from ..corruption import Corruption, CorruptionSampler, add_noise
from ..losses.disruption import cross_corruption_mass
from ..mass_attention import MassProbe, attention_with_mass, compute_dtype
from ..patches import patchify, unpatchify
from ..pretrained import init_weights_then_load

NOISE_LAYER_PIXEL = 'pixel'
# The memory-efficient attention kernel wants every stride of an attention
# bias but the last to be a multiple of 8 elements.
BIAS_ALIGN = 8


class QueryKey(NamedTuple):
    """Queries and keys of one block, ``(B, heads, 1 + N, head_dims)`` each."""
    q: Tensor
    k: Tensor


class EncoderOutput(NamedTuple):
    """What the corrupted forward returns.

    Attributes:
        tokens (Tensor): ``(B, N, D)`` final normalised patch tokens.
        clean (Tensor | None): ``(B, |S|, C)`` the clean hidden states (or
            pixel patches) of ``S`` where the noise was added.
        attention (dict): block index -> :class:`QueryKey`, for the blocks
            asked for in ``probe_layers`` (and ``blocked_layers``).
        cross_mass (dict): block index -> ``(B, heads)`` fp32
            cross-corruption attention mass ``c``, for the blocks asked for
            in ``mass_layers`` (read off the block's own attention).
    """
    tokens: Tensor
    clean: Optional[Tensor]
    attention: dict
    cross_mass: Optional[dict] = None


def cross_corruption_mask(corruption: Corruption,
                          num_extra_tokens: int) -> Tensor:
    """The attention mask that blocks ``M -> S`` and ``S -> M`` attention.

    Args:
        corruption (Corruption): The batch's corruption.
        num_extra_tokens (int): Tokens before the patches (the class token).

    Returns:
        Tensor: ``(B, 1, L, L)`` bool, True where attention is allowed, for
        ``L = num_extra_tokens + N`` tokens.
    """
    pad = (num_extra_tokens, 0)
    is_m = F.pad(corruption.mask, pad)
    is_s = F.pad(corruption.noised, pad)
    blocked = (is_m[:, :, None] & is_s[:, None, :]) | (
        is_s[:, :, None] & is_m[:, None, :])
    return ~blocked.unsqueeze(1)


def cross_corruption_bias(corruption: Corruption, num_extra_tokens: int,
                          dtype: torch.dtype) -> Tensor:
    """:func:`cross_corruption_mask` as an additive bias, built once per step.

    A bool mask is turned into a float bias inside every attention call, and
    some fused kernels take only a float bias; this one is made once, in the
    dtype the attention runs in (autocast's), and shared by all blocks, so no
    block converts it. Its rows are :data:`BIAS_ALIGN` elements apart (the
    last dim allocated padded, then sliced): the memory-efficient kernel pads
    a copy of any other bias in every call, and cuDNN may refuse it.

    Args:
        corruption (Corruption): The batch's corruption.
        num_extra_tokens (int): Tokens before the patches.
        dtype (torch.dtype): The dtype of the queries and keys.

    Returns:
        Tensor: ``(B, 1, L, L)``, 0 where attention is allowed, ``-inf``
        where it is blocked (no row is blocked entirely: the class token and
        the row's own set stay visible); a view with row stride a multiple
        of :data:`BIAS_ALIGN`.
    """
    allowed = cross_corruption_mask(corruption, num_extra_tokens)
    B, _, L, _ = allowed.shape
    row = math.ceil(L / BIAS_ALIGN) * BIAS_ALIGN
    bias = torch.zeros(B, 1, L, row, dtype=dtype, device=allowed.device)
    return bias[..., :L].masked_fill_(~allowed, float('-inf'))


def _attention_tail(layer: TransformerEncoderLayer, x: Tensor,
                    out: Tensor) -> Tensor:
    """The rest of mmpretrain's block after attention: residual and FFN.
    ``out`` is the ``(B, L, D)`` projected attention output."""
    attn = layer.attn
    x = x + attn.out_drop(attn.gamma1(attn.proj_drop(out)))
    return layer.ffn(layer.ln2(x), identity=x)


def _qkv(layer: TransformerEncoderLayer, x: Tensor) -> Tensor:
    """``(B, L, 3, heads, head_dims)`` queries, keys and values of a block."""
    attn = layer.attn
    B, L, _ = x.shape
    return attn.qkv(layer.ln1(x)).reshape(B, L, 3, attn.num_heads,
                                          attn.head_dims)


def plain_block_forward(layer: TransformerEncoderLayer, x: Tensor) -> Tensor:
    """mmpretrain's block as it is (a function, so that it can be compiled
    once for all blocks)."""
    return layer(x)


def block_forward(layer: TransformerEncoderLayer,
                  x: Tensor,
                  attn_mask: Optional[Tensor] = None
                  ) -> Tuple[Tensor, QueryKey]:
    """mmpretrain's ``TransformerEncoderLayer.forward``, also returning q and k.

    The attention stays fused (``scaled_dot_product_attention``); ``q`` and
    ``k`` are views that its backward keeps anyway.

    Args:
        layer (TransformerEncoderLayer): The block.
        x (Tensor): ``(B, L, D)`` input tokens.
        attn_mask (Tensor, optional): Bool mask (True where attention is
            allowed) or additive bias (:func:`cross_corruption_bias`).

    Returns:
        Tuple[Tensor, QueryKey]: The block's output and its queries and keys.
    """
    attn = layer.attn
    q, k, v = _qkv(layer, x).permute(2, 0, 3, 1, 4).unbind(0)
    out = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=attn_mask,
        dropout_p=attn.attn_drop if attn.training else 0.,
        scale=attn.head_dims**-0.5)
    B, L, _ = x.shape
    out = attn.proj(out.transpose(1, 2).reshape(B, L, attn.embed_dims))
    return _attention_tail(layer, x, out), QueryKey(q, k)


def mass_block_forward(layer: TransformerEncoderLayer,
                       x: Tensor,
                       probe: MassProbe,
                       attn_mask: Optional[Tensor] = None
                       ) -> Tuple[Tensor, Tensor]:
    """mmpretrain's block, also returning the cross-corruption mass ``c``.

    ``c`` is read off the block's own fused attention call (see
    :mod:`noisemim.models.mass_attention`). With attention dropout in
    training the probabilities are dropped too, so ``c`` is then computed
    from the queries and keys in a second call instead.

    Args:
        layer (TransformerEncoderLayer): The block.
        x (Tensor): ``(B, L, D)`` input tokens.
        probe (MassProbe): The step's indicator channels.
        attn_mask (Tensor, optional): Mask or additive bias.

    Returns:
        Tuple[Tensor, Tensor]: The block's output and ``(B, heads)`` ``c``.
    """
    if layer.attn.training and layer.attn.attn_drop > 0:
        x, (q, k) = block_forward(layer, x, attn_mask)
        return x, cross_corruption_mass(q, k, probe.masked_index,
                                        probe.noised_index).float()
    out, c = attention_with_mass(_qkv(layer, x), layer.attn.proj, probe,
                                 attn_mask)
    return _attention_tail(layer, x, out), c


class BlockFunctions(NamedTuple):
    """How the corrupted forward runs a block; ``noisemim.utils.compile``
    swaps in compiled versions (one graph each, shared by all blocks)."""
    plain: Callable = plain_block_forward
    probe: Callable = block_forward
    mass: Callable = mass_block_forward


def timestep_embedding(t: Tensor, dims: int, max_period: float = 1e4) -> Tensor:
    """Sinusoidal embedding of noise levels ``t`` in ``[0, 1]``.

    Args:
        t (Tensor): ``(B,)`` noise levels.
        dims (int): Embedding width (even).
        max_period (float): The longest period. Defaults to 1e4.

    Returns:
        Tensor: ``(B, dims)``.
    """
    half = dims // 2
    freqs = torch.exp(-math.log(max_period) *
                      torch.arange(half, device=t.device) / half)
    angles = 1000 * t.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


@MODELS.register_module()
class NoiseMIMViT(VisionTransformer):
    """Vision Transformer for NoiseMIM pre-training, and its downstream backbone.

    Args:
        arch, img_size, patch_size, ...: As mmpretrain's ``VisionTransformer``.
        mask_ratio (float): Share of mask units masked. Defaults to 0.6.
        mask_unit (int): Mask unit side in pixels. Defaults to 32.
        noise_ratio (float): Share of the visible patches noised.
            Defaults to 0.5.
        noise_layer (int | str): Index of the block whose input is noised
            (``0``: the embeddings), or ``'pixel'`` to noise image patches.
            Defaults to 2.
        t_range (Sequence[float]): Range of the noise level ``t``.
            Defaults to ``(0., 1.)``.
        time_embed (bool): Add a learned embedding of ``t`` to the noised
            tokens. Defaults to False.
        noise_scale_grad (bool): Keep the feature noise's scale ``rms(h)``
            in the autograd graph (see :func:`add_noise`); ``False``
            detaches it. Defaults to True.
        pretrain (bool): Build the pre-training parameters (``mask_token``,
            ``time_embed``). ``False`` builds a downstream backbone with
            exactly ``VisionTransformer``'s parameters (none unused, so DDP
            needs no ``find_unused_parameters``); it draws no corruption.
            Defaults to True.
        **kwargs: Passed to ``VisionTransformer``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: int = 224,
                 patch_size: int = 16,
                 mask_ratio: float = 0.6,
                 mask_unit: int = 32,
                 noise_ratio: float = 0.5,
                 noise_layer: Union[int, str] = 2,
                 t_range: Sequence[float] = (0., 1.),
                 time_embed: bool = False,
                 noise_scale_grad: bool = True,
                 pretrain: bool = True,
                 **kwargs) -> None:
        super().__init__(
            arch=arch, img_size=img_size, patch_size=patch_size, **kwargs)
        if time_embed and not pretrain:
            raise ValueError('time_embed=True is a pre-training parameter; '
                             'it needs pretrain=True (got pretrain=False)')
        self.pretrain = pretrain
        if noise_layer != NOISE_LAYER_PIXEL and not (
                isinstance(noise_layer, int)
                and 0 <= noise_layer < self.num_layers):
            raise ValueError(
                f"noise_layer must be 'pixel' or a block index in "
                f'[0, {self.num_layers - 1}], got {noise_layer!r}')
        if pretrain and not self.final_norm:
            raise ValueError('NoiseMIMViT pre-training needs final_norm=True '
                             '(the heads read the final normalised tokens).')
        self.patch_size = patch_size
        self.noise_layer = noise_layer
        self.noise_scale_grad = noise_scale_grad
        pixel_channels = patch_size**2 * kwargs.get('in_channels', 3)
        self.corruption_sampler = CorruptionSampler(
            patch_size=patch_size,
            mask_ratio=mask_ratio,
            mask_unit=mask_unit,
            noise_ratio=noise_ratio,
            t_range=t_range,
            noise_channels=pixel_channels
            if noise_layer == NOISE_LAYER_PIXEL else self.embed_dims)
        self.corruption_sampler.counts(self.patch_resolution)  # validate
        self.mask_token = nn.Parameter(torch.zeros(
            1, 1, self.embed_dims)) if pretrain else None
        self.time_embed = nn.Sequential(
            nn.Linear(self.embed_dims, self.embed_dims), nn.SiLU(),
            nn.Linear(self.embed_dims, self.embed_dims)) if time_embed else None
        # How the corrupted forward runs its blocks (compiled by
        # ``noisemim.utils.compile.compile_model``).
        self.block_functions = BlockFunctions()

    @property
    def first_noised_block(self) -> int:
        """The first block that sees noised tokens."""
        return 0 if self.noise_layer == NOISE_LAYER_PIXEL else self.noise_layer

    def init_weights(self) -> None:
        """Random init, then any ``StrictPretrained`` init_cfg (loaded last,
        as mmengine does for its own ``Pretrained``)."""
        init_weights_then_load(self, self._init_weights)

    def _init_weights(self) -> None:
        super().init_weights()
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=0.02)

    def sample_corruption(
            self,
            images: Tensor,
            generator: Optional[torch.Generator] = None) -> Corruption:
        """Draw ``M``, ``S``, ``t`` and ``eps`` for a batch of images.

        Args:
            images (Tensor): ``(B, C, H, W)``.
            generator (torch.Generator, optional): See
                :class:`CorruptionSampler`.

        Returns:
            Corruption: The batch's corruption.
        """
        self._check_pretrain()
        p = self.patch_size
        grid = (images.shape[2] // p, images.shape[3] // p)
        with record_function('noisemim.sample_corruption'):
            return self.corruption_sampler(images.shape[0], grid,
                                           images.device, generator)

    def forward(self,
                x: Tensor,
                corruption: Optional[Corruption] = None,
                probe_layers: Sequence[int] = (),
                blocked_layers: Sequence[int] = (),
                mass_layers: Sequence[int] = ()
                ) -> Union[Tuple[Tensor, ...], EncoderOutput]:
        """Encode images, corrupted for pre-training or not.

        Args:
            x (Tensor): ``(B, C, H, W)`` images.
            corruption (Corruption, optional): Without it, this is exactly
                ``VisionTransformer.forward``.
            probe_layers (Sequence[int]): Blocks whose queries and keys are
                returned (the ``'entropy'`` disruption loss, analyses).
            blocked_layers (Sequence[int]): Blocks where attention between
                ``M`` and ``S`` is masked out (``disentangle='hard'``).
            mass_layers (Sequence[int]): Blocks whose cross-corruption
                attention mass ``c`` is returned (the ``'mass'`` disruption
                loss), read off the block's own attention call.

        Returns:
            The ``VisionTransformer`` outputs, or an :class:`EncoderOutput`.
        """
        if corruption is None:
            return super().forward(x)
        self._check_pretrain()
        both = set(mass_layers) & set(probe_layers)
        if both:
            raise ValueError(f'blocks {sorted(both)} are in both mass_layers '
                             'and probe_layers; ask for one of them per block')

        B = x.shape[0]
        noisy = corruption.num_noised > 0
        clean = None
        if noisy and self.noise_layer == NOISE_LAYER_PIXEL:
            grid = (x.shape[2] // self.patch_size, x.shape[3] // self.patch_size)
            with record_function('noisemim.noise_injection'):
                patches, clean = add_noise(
                    patchify(x, self.patch_size), corruption.noised_index,
                    corruption.alpha_bar, corruption.eps)
                x = unpatchify(patches, self.patch_size, grid)

        tokens, patch_resolution = self.patch_embed(x)
        w = corruption.mask.unsqueeze(-1).to(tokens.dtype)
        tokens = tokens * (1 - w) + self.mask_token.to(tokens.dtype) * w
        if self.cls_token is not None:
            tokens = torch.cat((self.cls_token.expand(B, -1, -1), tokens), 1)
        tokens = tokens + resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        tokens = self.pre_norm(self.drop_after_pos(tokens))

        noised_index = corruption.noised_index + self.num_extra_tokens
        # Built once per step, in the dtype the attention runs in.
        dtype = compute_dtype(tokens)
        bias = cross_corruption_bias(corruption, self.num_extra_tokens,
                                     dtype) if blocked_layers else None
        probe = MassProbe(corruption, self.num_extra_tokens,
                          self.layers[0].attn.head_dims,
                          dtype) if mass_layers else None
        run = self.block_functions
        attention, cross_mass = {}, {}
        for i, layer in enumerate(self.layers):
            if noisy and i == self.first_noised_block:
                tokens, clean = self._inject_noise(tokens, clean,
                                                   noised_index, corruption)
            attn_mask = bias if i in blocked_layers else None
            if i in mass_layers:
                tokens, cross_mass[i] = run.mass(layer, tokens, probe,
                                                 attn_mask)
            elif i in probe_layers or attn_mask is not None:
                tokens, attention[i] = run.probe(layer, tokens, attn_mask)
            else:
                tokens = run.plain(layer, tokens)
        tokens = self.ln1(tokens)
        return EncoderOutput(tokens[:, self.num_extra_tokens:], clean,
                             attention, cross_mass)

    def _inject_noise(self, tokens: Tensor, clean: Optional[Tensor],
                      index: Tensor, corruption: Corruption
                      ) -> Tuple[Tensor, Optional[Tensor]]:
        """Noise the tokens at ``index`` (feature noise) and add ``time_embed``.

        Args:
            tokens (Tensor): ``(B, L, D)`` hidden states entering the block.
            clean (Tensor, optional): The clean pixel patches (pixel noise).
            index (Tensor): ``(B, |S|)`` indices of ``S`` in ``L``.
            corruption (Corruption): The batch's corruption.

        Returns:
            Tuple[Tensor, Tensor | None]: The tokens, and the clean states
            of ``S`` where the noise was added.
        """
        with record_function('noisemim.noise_injection'):
            if self.noise_layer != NOISE_LAYER_PIXEL:
                tokens, clean = add_noise(tokens, index, corruption.alpha_bar,
                                          corruption.eps,
                                          self.noise_scale_grad)
            if self.time_embed is not None:
                tokens = self._add_time_embed(tokens, index, corruption.t)
        return tokens, clean

    def _add_time_embed(self, tokens: Tensor, index: Tensor,
                        t: Tensor) -> Tensor:
        """Add the learned embedding of ``t`` to the tokens at ``index``."""
        emb = self.time_embed(timestep_embedding(t, self.embed_dims))
        emb = emb.to(tokens.dtype)[:, None].expand(-1, index.shape[1], -1)
        return tokens.scatter_add(
            1,
            index.unsqueeze(-1).expand(-1, -1, self.embed_dims), emb)

    def _check_pretrain(self) -> None:
        """Refuse corruption in a backbone built with ``pretrain=False``."""
        if not self.pretrain:
            raise ValueError(
                f'{type(self).__name__} was built with pretrain=False, a '
                'downstream backbone without a mask token: it takes only '
                'images; pre-train with pretrain=True.')

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        """As ``VisionTransformer``, with the mask token in the stem."""
        if param_name[len(prefix):] == 'mask_token':
            return 0, self.num_layers + 2
        return super().get_layer_depth(param_name, prefix)
