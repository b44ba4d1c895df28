"""Import helper: MMDetection 3.3.0 without its compiled ops.

mmcv-lite has no `mmcv.ops`, and `mmdet.utils` imports matplotlib, which the
test environment lacks; neither is used by dataset loading. This installs
stand-in modules for both before mmdet is imported. A stand-in raises when
anything from it is actually called.
"""
import importlib.abc
import importlib.machinery
import sys
import types

STUBS = ('mmcv.ops', 'matplotlib')


class _StandIn(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)

        def fail(*args, **kwargs):
            raise RuntimeError(f'{self.__name__}.{name} is a test stand-in')

        return type(name, (), {'__init__': fail, '__call__': fail})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if any(name == s or name.startswith(s + '.') for s in STUBS):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandIn(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())
