"""Imported by the segmentation configs (``custom_imports``): checks that mmseg
and mmcv's compiled ops import, or fails saying what to install.

Segmentation needs mmsegmentation 1.2.2 and mmcv 2.1.0 with its compiled ops;
pre-training needs neither (see :mod:`noisemim.registration`).
"""
from .registration import require

require('mmseg')
