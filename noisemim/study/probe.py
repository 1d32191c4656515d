"""Frozen-feature quality: features of a probe dataset, k-NN and linear probe.

The probe data is any mmpretrain classification dataset (ImageNet layout,
``CustomDataset`` folders, the fine-grained sets, or the study's built-in
``PhotoCrops`` and ``SklearnDigits``) built from a config whose pipeline ends
in ``PackInputs``. The frozen ViT runs as mmpretrain's plain
``VisionTransformer`` on the clean images (no mask, no noise, no time
embedding: what is transferred downstream); features are mean-pooled patch
tokens of the final norm and, optionally, of chosen blocks.
"""
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmpretrain.registry import DATASETS
from torch import Tensor, nn

from ..analysis.probes import probe_encoder, vit_encoder

FINAL = 'final'


@dataclass
class ProbeResult:
    """Validation accuracies, in percent."""
    knn: float
    linear: float


def _as_list(batch: list) -> list:
    return batch


class ProbeSet:
    """One split of a probe dataset: its images (``uint8``, ``(3, H, W)``)
    and labels, loaded once into memory (``cache=True``) or streamed.

    Args:
        dataset (dict): An mmpretrain dataset config (built with
            ``DATASETS``) whose samples carry ``gt_label``.
        batch_size (int): Images per batch. Defaults to 256.
        num_workers (int): DataLoader workers. Defaults to 0.
        cache (bool): Keep all images in memory after the first pass (fast
            for small sets; turn off for large ones). Defaults to True.
    """

    def __init__(self,
                 dataset: dict,
                 batch_size: int = 256,
                 num_workers: int = 0,
                 cache: bool = True) -> None:
        self.dataset = DATASETS.build(dataset)
        if len(self.dataset) == 0:
            raise ValueError(f'the probe dataset {dataset.get("type")!r} is '
                             'empty')
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.cache = cache
        self._images: Optional[Tensor] = None
        self._labels: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.dataset)

    def _stream(self) -> Iterator[Tuple[Tensor, np.ndarray]]:
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_as_list)
        for batch in loader:
            shapes = {tuple(item['inputs'].shape) for item in batch}
            if len(shapes) != 1:
                raise ValueError(
                    'probe images must all have one size (end the probe '
                    f'pipeline with a fixed-size resize or crop); got '
                    f'{sorted(shapes)}')
            labels = []
            for item in batch:
                sample = item['data_samples']
                if 'gt_label' not in sample:
                    raise ValueError('probe samples need a gt_label; is the '
                                     'probe dataset a classification set?')
                labels.append(int(sample.gt_label[0]))
            yield (torch.stack([item['inputs'] for item in batch]),
                   np.array(labels))

    def batches(self) -> Iterator[Tuple[Tensor, np.ndarray]]:
        """Yield ``(images, labels)`` batches, in dataset order."""
        if not self.cache:
            yield from self._stream()
            return
        if self._images is None:
            parts = list(self._stream())
            self._images = torch.cat([p[0] for p in parts])
            self._labels = np.concatenate([p[1] for p in parts])
        for start in range(0, len(self._images), self.batch_size):
            stop = start + self.batch_size
            yield self._images[start:stop], self._labels[start:stop]

    def spread(self, num: int) -> Tensor:
        """``num`` images evenly spaced over the split (all if it is
        smaller), so that every part of it (every class, for a
        class-ordered set) is represented."""
        total = len(self.dataset)
        index = np.unique(np.linspace(0, total - 1, min(num, total)).round())
        return torch.stack(
            [self.dataset[int(i)]['inputs'] for i in index])

    @property
    def image_size(self) -> Tuple[int, int]:
        """``(H, W)`` of the probe images."""
        return tuple(self.dataset[0]['inputs'].shape[-2:])


def normalize(model: nn.Module, images: Tensor) -> Tensor:
    """``uint8`` images as the model's data preprocessor would give them
    (channel order, mean and std), on the model's device.

    Args:
        model (nn.Module): A model with a ``data_preprocessor`` (mmpretrain's
            ``SelfSupDataPreprocessor`` or ``ClsDataPreprocessor``).
        images (Tensor): ``(B, 3, H, W)`` images as packed by ``PackInputs``.

    Returns:
        Tensor: ``(B, 3, H, W)`` float inputs of the backbone.
    """
    preprocessor = model.data_preprocessor
    device = next(model.parameters()).device
    x = images.to(device).float()
    if getattr(preprocessor, '_channel_conversion', False):
        x = x[:, [2, 1, 0]]
    if getattr(preprocessor, '_enable_normalize', False):
        x = (x - preprocessor.mean) / preprocessor.std
    return x


@torch.no_grad()
def encode(model: nn.Module, images: Tensor,
           blocks: Sequence[int] = ()) -> Dict[str, Tensor]:
    """Mean-pooled patch tokens of the clean encoder.

    Args:
        model (nn.Module): A model with a ViT ``backbone``.
        images (Tensor): ``(B, 3, H, W)`` ``uint8`` images.
        blocks (Sequence[int]): Blocks whose outputs (the residual stream,
            before the final norm) are pooled too.

    Returns:
        Dict[str, Tensor]: ``'final'`` (after the final norm, as
        ``out_type='raw'`` gives it) and ``'block<i>'`` for each block,
        each ``(B, D)`` on the CPU.
    """
    vit = vit_encoder(model)
    last = len(vit.layers) - 1
    wanted = sorted(set(blocks) | {last})
    probe = probe_encoder(model, normalize(model, images), wanted)
    outputs = dict(zip(wanted, probe.features))
    final = outputs[last]
    if getattr(vit, 'final_norm', False):
        final = vit.ln1(final)
    n = probe.num_extra_tokens
    feats = {FINAL: final[:, n:].mean(1).float().cpu()}
    for b in blocks:
        feats[f'block{b}'] = outputs[b][:, n:].mean(1).float().cpu()
    return feats


def extract_features(model: nn.Module, probe_set: ProbeSet,
                     blocks: Sequence[int] = ()
                     ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Features of every image of a probe split (the model in eval mode).

    Args:
        model (nn.Module): A model with a ViT ``backbone``.
        probe_set (ProbeSet): The split.
        blocks (Sequence[int]): Extra blocks to pool (see :func:`encode`).

    Returns:
        Tuple[Dict[str, np.ndarray], np.ndarray]: Features by name
        (``(n, D)`` each) and the ``(n,)`` labels.
    """
    was_training = model.training
    model.eval()
    parts: Dict[str, List[Tensor]] = {}
    labels = []
    try:
        for images, batch_labels in probe_set.batches():
            for name, feats in encode(model, images, blocks).items():
                parts.setdefault(name, []).append(feats)
            labels.append(batch_labels)
    finally:
        model.train(was_training)
    return ({name: torch.cat(p).numpy()
             for name, p in parts.items()}, np.concatenate(labels))


def probe_features(train_x: np.ndarray,
                   train_y: np.ndarray,
                   val_x: np.ndarray,
                   val_y: np.ndarray,
                   seed: int = 0,
                   k: int = 10) -> ProbeResult:
    """Fit a cosine k-NN classifier and a linear probe on ``train``, score
    them on ``val``.

    Args:
        train_x (np.ndarray): ``(n, D)`` training features.
        train_y (np.ndarray): ``(n,)`` training labels.
        val_x (np.ndarray): ``(m, D)`` validation features.
        val_y (np.ndarray): ``(m,)`` validation labels.
        seed (int): Seed of the logistic regression. Defaults to 0.
        k (int): Neighbours of the k-NN classifier. Defaults to 10.

    Returns:
        ProbeResult: Validation accuracies in percent. The linear probe is
        a logistic regression on standardised features.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if k < 1:
        raise ValueError(f'k must be >= 1, got {k!r}')
    if len(train_x) != len(train_y) or len(val_x) != len(val_y):
        raise ValueError('features and labels differ in length: '
                         f'{len(train_x)} vs {len(train_y)} (train), '
                         f'{len(val_x)} vs {len(val_y)} (val)')
    knn = KNeighborsClassifier(
        n_neighbors=min(k, len(train_x)), metric='cosine')
    linear = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000,
                                             random_state=seed))
    return ProbeResult(
        knn=100. * knn.fit(train_x, train_y).score(val_x, val_y),
        linear=100. * linear.fit(train_x, train_y).score(val_x, val_y))
