"""The corruption design-space study: protocols, probe data, frozen-feature
probes, per-cell analyses and reports.

Used by ``tools/study.py``. Importing it registers the study's probe
datasets (``PhotoCrops``, ``SklearnDigits``) in mmpretrain's ``DATASETS``.
"""
from .analyses import analyze_cell, cell_loss_gradients
from .budget import set_budget
from .curve import ProbeCurveHook
from .digits import SklearnDigits
from .fast_config import FormattedOnceConfig
from .photo_crops import PhotoCrops, default_photos
from .probe import (ProbeResult, ProbeSet, encode, extract_features,
                    probe_features)
from .protocol import apply_protocol, load_protocol
from .report import (CellSummary, beats, plot_analyses, plot_curves,
                     plot_summaries, summarize, write_markdown)

__all__ = [
    'analyze_cell', 'cell_loss_gradients', 'set_budget', 'ProbeCurveHook',
    'SklearnDigits', 'FormattedOnceConfig',
    'PhotoCrops', 'default_photos', 'ProbeResult', 'ProbeSet', 'encode',
    'extract_features', 'probe_features', 'apply_protocol', 'load_protocol',
    'CellSummary', 'beats', 'plot_analyses', 'plot_curves', 'plot_summaries',
    'summarize', 'write_markdown'
]
