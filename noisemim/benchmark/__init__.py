"""Side-by-side pre-training benchmark: NoiseMIM, a SimMIM-style ViT and MAE.

``tools/benchmark.py`` is its command line. Importing this package registers
:class:`SimMIMMaskTokenViT`, the mask-token ViT of the SimMIM-style baseline.
"""
from .models import (MAE_NAME, NOISEMIM_NAME, SIMMIM_NAME, ModelSpec,
                     SimMIMMaskTokenViT, benchmark_models)
from .pipeline import pipeline_throughput
from .profiling import range_shares
from .report import format_table, peak_bf16_flops
from .worker import Worker, WorkerSpec

__all__ = [
    'MAE_NAME', 'NOISEMIM_NAME', 'SIMMIM_NAME', 'ModelSpec',
    'SimMIMMaskTokenViT', 'benchmark_models', 'pipeline_throughput',
    'range_shares', 'format_table', 'peak_bf16_flops', 'Worker', 'WorkerSpec'
]
