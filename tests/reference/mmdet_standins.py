"""Stand-ins that let MMDetection import in the test-only environment.

`mmcv.ops` exists in mmcv-lite but fails on its compiled `_ext`, and
`mmdet.utils`/`mmdet.models.utils` import packages the environment does not
install (plotting, `six`). The references here never call any of them, so
each missing name becomes a class that raises when used.
"""
import importlib.abc
import importlib.machinery
import sys
import types


class _StandIn:

    def __init__(self, *args, **kwargs):
        raise RuntimeError('stand-in for a module the references do not use')


def _stand_in_module(name):
    module = types.ModuleType(name)
    module.__path__ = []

    def __getattr__(attr):
        if attr.startswith('__'):
            raise AttributeError(attr)
        return type(attr, (_StandIn, ), {})

    module.__getattr__ = __getattr__
    return module


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):

    def __init__(self, prefixes):
        self.prefixes = prefixes

    def find_spec(self, name, path, target=None):
        if any(name == p or name.startswith(p + '.') for p in self.prefixes):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _stand_in_module(spec.name)

    def exec_module(self, module):
        pass


def install():
    # Ahead of the real (broken) package.
    sys.meta_path.insert(0, _StandInFinder(('mmcv.ops', )))
    # Only where the package is missing.
    sys.meta_path.append(
        _StandInFinder(('matplotlib', 'scipy', 'terminaltables', 'seaborn')))
    try:
        import six  # noqa: F401
    except ImportError:
        # `from six.moves import map, zip`: the builtins.
        six = types.ModuleType('six')
        six.moves = types.ModuleType('six.moves')
        six.moves.map, six.moves.zip = map, zip
        sys.modules['six'], sys.modules['six.moves'] = six, six.moves
