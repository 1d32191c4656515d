"""Layer-wise learning-rate decay for any model whose backbone knows the depth
of its parameters (``get_layer_depth``), in mmpretrain, mmdet and mmseg.

mmdet's and mmseg's own layer-decay constructors pick their rules by the
backbone's class name (ConvNeXt, BEiT, MAE) and raise for any other; this one
asks the backbone instead, so it serves :class:`~noisemim.models.NoiseMIMViT`,
mmpretrain's ``VisionTransformer`` and any subclass of them.
"""
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Tuple

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm, _InstanceNorm
from torch import nn

DepthFn = Callable[[str], Tuple[int, int]]

#: Parameters (by their last name) that get no weight decay by default.
NO_DECAY_NAMES = ('cls_token', 'pos_embed', 'mask_token', 'dist_token',
                  'absolute_pos_embed')
NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def layer_depth_fn(model: nn.Module) -> DepthFn:
    """How deep each parameter of ``model`` sits, from its backbone.

    Args:
        model (nn.Module): A model with a ``backbone`` (classifier, detector,
            segmentor, pre-training algorithm) whose ``get_layer_depth(name,
            prefix)`` gives ``(depth, num_depths)``; or such a backbone itself.

    Returns:
        Callable[[str], Tuple[int, int]]: Maps a parameter name of ``model``
        to ``(depth, num_depths)``. Parameters outside the backbone (neck,
        heads) get the top depth ``num_depths - 1``.

    Raises:
        TypeError: Neither ``model.backbone`` nor ``model`` has
            ``get_layer_depth``.
    """
    backbone = getattr(model, 'backbone', None)
    if hasattr(backbone, 'get_layer_depth'):
        return lambda name: backbone.get_layer_depth(name, prefix='backbone.')
    if hasattr(model, 'get_layer_depth'):
        return lambda name: model.get_layer_depth(name, prefix='')
    where = (f'its backbone {type(backbone).__name__}'
             if backbone is not None else 'it has no `backbone` and it')
    raise TypeError(
        f'LayerDecayOptimWrapperConstructor needs a backbone with a '
        f'`get_layer_depth(param_name, prefix)` method; the model is '
        f'{type(model).__name__} and {where} has none.')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise lr decay driven by the backbone's ``get_layer_depth``.

    A parameter at depth ``d`` of ``n`` depths (``backbone.get_layer_depth``:
    0 for the stem, ``i + 1`` for block ``i``, ``n - 1`` for what follows)
    gets ``lr = base_lr * layer_decay_rate ** (n - 1 - d)``; parameters
    outside the backbone get ``base_lr``. This is the rule of mmpretrain's
    ``LearningRateDecayOptimWrapperConstructor`` (and of BEiT/MAE), but the
    backbone is found at ``model.backbone``, so the same constructor serves
    classifiers, detectors and segmentors.

    It is registered in mmengine's root registry, so configs of every scope
    (``default_scope`` mmpretrain, mmdet or mmseg) can name it.

    ``paramwise_cfg`` keys:

    - ``layer_decay_rate`` (float): In ``(0, 1]``. Defaults to 1 (no decay).
    - ``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult``
      (float): Weight-decay multipliers of normalisation layers, biases and
      other 1-d parameters. Each defaults to 0 (no weight decay).
    - ``no_decay_names`` (Sequence[str]): Parameters whose last name is one
      of these get no weight decay. Defaults to :data:`NO_DECAY_NAMES`
      (class/mask/distillation tokens, position embeddings).
    - ``custom_keys`` (dict): ``{substring: dict(lr_mult=...,
      decay_mult=...)}`` for parameters whose full name contains the
      substring (the longest matching key wins). ``lr_mult`` multiplies
      the layer-decayed lr; ``decay_mult`` replaces the rules above.

    Example::

        optim_wrapper = dict(
            type='AmpOptimWrapper',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.65))

    Args:
        optim_wrapper_cfg (dict): The optimizer wrapper config, with
            ``optimizer``.
        paramwise_cfg (dict, optional): See above.
    """

    KNOWN_KEYS = ('layer_decay_rate', 'norm_decay_mult', 'bias_decay_mult',
                  'flat_decay_mult', 'no_decay_names', 'custom_keys')

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        cfg = dict(paramwise_cfg or {})
        unknown = sorted(set(cfg) - set(self.KNOWN_KEYS))
        if unknown:
            raise KeyError(f'LayerDecayOptimWrapperConstructor: unknown '
                           f'paramwise_cfg keys {unknown}; expected some of '
                           f'{list(self.KNOWN_KEYS)}')
        rate = cfg.setdefault('layer_decay_rate', 1.0)
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'layer_decay_rate must be a number in (0, 1], '
                             f'got {rate!r}')
        super().__init__(optim_wrapper_cfg, cfg)  # validates the mults
        if self.base_lr is None:
            raise ValueError('LayerDecayOptimWrapperConstructor needs the '
                             'optimizer config to set `lr`.')
        for key in ('norm_decay_mult', 'bias_decay_mult', 'flat_decay_mult'):
            self.paramwise_cfg.setdefault(key, 0.)
        self.paramwise_cfg.setdefault('no_decay_names', NO_DECAY_NAMES)
        self.paramwise_cfg.setdefault('custom_keys', {})

    def _weight_decay(self, module: nn.Module, name: str, full_name: str,
                      param: nn.Parameter, custom: Optional[dict]) -> float:
        """The weight decay of one parameter (see the class docstring)."""
        cfg = self.paramwise_cfg
        if custom is not None and 'decay_mult' in custom:
            mult = custom['decay_mult']
        elif isinstance(module, NORMS):
            mult = cfg['norm_decay_mult']
        elif name == 'bias':
            mult = cfg['bias_decay_mult']
        elif full_name.rsplit('.', 1)[-1] in cfg['no_decay_names']:
            mult = 0.
        elif param.ndim == 1:
            mult = cfg['flat_decay_mult']
        else:
            mult = 1.
        return self.base_wd * mult

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   depth_fn: Optional[DepthFn] = None,
                   **kwargs) -> None:
        """Add one param group per trainable parameter of ``module``.

        Args:
            params (List[dict]): The param groups, extended in place.
            module (nn.Module): The model (top call) or one of its modules.
            prefix (str): The module's name in the model, with a trailing
                dot (empty for the model).
            depth_fn (Callable, optional): Parameter name -> ``(depth,
                num_depths)``; found from the model on the top call.
        """
        top = depth_fn is None
        if top:
            depth_fn = layer_depth_fn(module)
        custom_keys: Dict[str, dict] = self.paramwise_cfg['custom_keys']
        # the longest matching key wins (ties: alphabetical)
        sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)
        rate = self.paramwise_cfg['layer_decay_rate']

        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full_name = prefix + name
            key = next((k for k in sorted_keys if k in full_name), None)
            custom = custom_keys[key] if key is not None else None
            depth, num_depths = depth_fn(full_name)
            scale = rate**(num_depths - 1 - depth)
            group = dict(
                params=[param],
                lr=self.base_lr * scale * (custom or {}).get('lr_mult', 1.),
                lr_scale=scale,
                layer_id=depth,
                param_name=full_name)
            if self.base_wd is not None:
                group['weight_decay'] = self._weight_decay(
                    module, name, full_name, param, custom)
            params.append(group)

        for child_name, child in module.named_children():
            self.add_params(params, child, f'{prefix}{child_name}.', depth_fn)

        if top:
            self._log_groups(params)

    @staticmethod
    def _log_groups(params: List[dict]) -> None:
        """Log the lr of each depth (info) and each parameter (debug)."""
        by_depth = defaultdict(list)
        for group in params:
            by_depth[group['layer_id']].append(group)
        summary = ', '.join(
            f'{depth}: x{groups[0]["lr_scale"]:.3g}'
            for depth, groups in sorted(by_depth.items()))
        print_log(f'layer-wise lr decay, lr scale by depth: {summary}',
                  'current')
        for group in params:
            print_log(
                f'{group["param_name"]}: depth {group["layer_id"]}, '
                f'lr {group["lr"]:.3g}, '
                f'weight_decay {group.get("weight_decay", "-")}',
                'current',
                level=10)
