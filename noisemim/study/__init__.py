"""The corruption design-space study: budgets, frozen-feature probes, reports.

Used by ``tools/study.py``; nothing here is registered in a registry.
"""
from .budget import set_budget
from .digits import load_digit_images
from .fast_config import FormattedOnceConfig
from .probe import ProbeResult, extract_features, probe_features
from .report import CellSummary, plot_summaries, summarize, write_markdown

__all__ = [
    'set_budget', 'load_digit_images', 'FormattedOnceConfig', 'ProbeResult',
    'extract_features', 'probe_features', 'CellSummary', 'summarize',
    'write_markdown', 'plot_summaries'
]
