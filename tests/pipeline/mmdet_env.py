"""Imports MMDetection's transforms from the test environment (mmcv-lite),
through the shared stand-ins of `tests/reference/mmdet_standins.py`."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reference'))
import mmdet_standins  # noqa: E402

mmdet_standins.install()

from mmcv.transforms import LoadImageFromFile  # noqa: E402,F401
from mmdet.datasets.transforms import (  # noqa: E402,F401
    LoadAnnotations, PackDetInputs, Pad, RandomFlip, Resize)
from mmdet.registry import TRANSFORMS  # noqa: E402,F401
