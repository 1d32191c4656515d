"""Frozen-feature quality: k-NN and linear-probe accuracy (scikit-learn)."""
from dataclasses import dataclass

import numpy as np
import torch
from mmpretrain.models.backbones import VisionTransformer
from torch import Tensor, nn


@dataclass
class ProbeResult:
    """Test accuracies, in percent."""
    knn: float
    linear: float


@torch.no_grad()
def extract_features(model: nn.Module,
                     images: Tensor,
                     batch_size: int = 256) -> np.ndarray:
    """Mean-pooled final patch tokens of the model's ViT on clean images.

    The backbone runs as mmpretrain's plain ``VisionTransformer`` (what is
    transferred downstream: no mask, no noise, no time embedding), whatever
    pre-training subclass it is.

    Args:
        model (nn.Module): A self-supervised model with a ``backbone`` (a
            ``VisionTransformer`` subclass) and a ``data_preprocessor`` with
            ``mean`` and ``std``.
        images (Tensor): ``(n, 3, H, W)`` images in ``[0, 255]``.
        batch_size (int): Images per forward pass. Defaults to 256.

    Returns:
        np.ndarray: ``(n, D)`` features.
    """
    backbone = model.backbone
    if not isinstance(backbone, VisionTransformer):
        raise TypeError('extract_features needs a VisionTransformer backbone, '
                        f'got {type(backbone).__name__}')
    preprocessor = model.data_preprocessor
    was_training, out_type = model.training, backbone.out_type
    model.eval()
    backbone.out_type = 'raw'
    try:
        feats = []
        for batch in images.split(batch_size):
            batch = (batch - preprocessor.mean) / preprocessor.std
            tokens = VisionTransformer.forward(backbone, batch)[-1]
            feats.append(tokens[:, backbone.num_extra_tokens:].mean(1))
    finally:
        backbone.out_type = out_type
        model.train(was_training)
    return torch.cat(feats).float().numpy()


def probe_features(features: np.ndarray,
                   labels: np.ndarray,
                   seed: int,
                   k: int = 10,
                   test_size: float = 0.5) -> ProbeResult:
    """k-NN and linear-probe accuracy on a stratified random split.

    Args:
        features (np.ndarray): ``(n, D)`` frozen features.
        labels (np.ndarray): ``(n,)`` class labels.
        seed (int): Seed of the split (and of the logistic regression).
        k (int): Neighbours of the cosine k-NN classifier. Defaults to 10.
        test_size (float): Share of the samples held out. Defaults to 0.5.

    Returns:
        ProbeResult: Held-out accuracies in percent.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = train_test_split(
        features,
        labels,
        test_size=test_size,
        stratify=labels,
        random_state=seed)
    knn = KNeighborsClassifier(
        n_neighbors=min(k, len(x_train)), metric='cosine')
    linear = make_pipeline(
        StandardScaler(),
        LogisticRegression(max_iter=2000, random_state=seed))
    return ProbeResult(
        knn=100. * knn.fit(x_train, y_train).score(x_test, y_test),
        linear=100. * linear.fit(x_train, y_train).score(x_test, y_test))
