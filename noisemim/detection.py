"""Imported by the detection configs (``custom_imports``): registers
noisemim's mmdet parts, or fails saying what to install.

Detection needs mmdet 3.3.0 and mmcv 2.1.0 with its compiled ops; pre-training
needs neither (see :mod:`noisemim.registration`).
"""
from .registration import require

require('mmdet')
