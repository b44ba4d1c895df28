"""Imports MMDetection's transforms from the test environment (mmcv-lite).

mmcv-lite has no compiled `mmcv.ops`, and matplotlib is not installed;
`mmdet.datasets.transforms` imports both at module level but the transforms
used here never call them. A meta-path finder answers those imports with
stand-in modules whose attributes raise when used.
"""
import importlib.abc
import importlib.machinery
import sys
import types

STUBS = ['mmcv.ops', 'matplotlib']


class _Absent:
    def __init__(self, *args, **kwargs):
        raise RuntimeError('stand-in for a module absent from the test environment')


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _Absent


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if any(fullname == s or fullname.startswith(s + '.') for s in STUBS):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())

from mmcv.transforms import LoadImageFromFile  # noqa: E402,F401
from mmdet.datasets.transforms import (  # noqa: E402,F401
    LoadAnnotations, PackDetInputs, Pad, RandomFlip, Resize)
from mmdet.registry import TRANSFORMS  # noqa: E402,F401
