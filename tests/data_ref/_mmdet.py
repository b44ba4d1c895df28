"""Import helper: MMDetection 3.3.0 without its compiled ops, through the
shared stand-ins of `tests/reference/mmdet_standins.py`."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'reference'))
import mmdet_standins  # noqa: E402

mmdet_standins.install()
