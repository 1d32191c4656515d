"""The paper's analyses of pre-trained ViTs: attention-head diversity, the
frequency spectrum of features, class-token attention maps and reconstructions.

The tools in ``tools/analysis/`` are thin command lines over these functions.
"""
from .attention_maps import ClassAttention, class_token_attention
from .checkpoint import CheckpointMismatchError, load_model
from .head_diversity import (HeadDiversity, head_kl_matrix,
                             measure_head_diversity, per_head_kl)
from .images import image_batches, image_paths, input_size, to_display
from .probes import EncoderProbe, attention_logits, probe_encoder, vit_encoder
from .reconstruction import (Reconstruction, denormalize_patches,
                             paste_patches, reconstruct, reconstructor_for,
                             register_reconstructor)
from .spectrum import (SpectrumMeter, diagonal_log_amplitude,
                       measure_feature_spectrum, relative_log_amplitude,
                       tokens_to_feature_map)

__all__ = [
    'CheckpointMismatchError', 'ClassAttention', 'EncoderProbe',
    'HeadDiversity', 'Reconstruction', 'SpectrumMeter', 'attention_logits',
    'class_token_attention', 'denormalize_patches', 'diagonal_log_amplitude',
    'head_kl_matrix', 'image_batches', 'image_paths', 'input_size',
    'load_model', 'measure_feature_spectrum', 'measure_head_diversity',
    'paste_patches', 'per_head_kl', 'probe_encoder', 'reconstruct',
    'reconstructor_for', 'register_reconstructor', 'relative_log_amplitude',
    'to_display', 'tokens_to_feature_map', 'vit_encoder'
]
