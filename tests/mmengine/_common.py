"""Helpers shared by the MMEngine reference scripts (run with .venv-test/bin/python)."""
import importlib.util
import math
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mmdet_configs_dir() -> str:
    """The Python configs shipped inside the installed mmdet wheel.

    mmdet is only located, never imported: its __init__ needs mmcv, which the
    test environment deliberately does not have.
    """
    spec = importlib.util.find_spec('mmdet')
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit('mmdet is not installed: run scripts/test-env first')
    for root in spec.submodule_search_locations:
        path = os.path.join(root, '.mim', 'configs')
        if os.path.isdir(path):
            return path
    raise SystemExit('mmdet is installed but has no .mim/configs folder')


def plain(value, path='$'):
    """Config.to_dict() output as plain JSON data: tuples become lists.

    Raises ValueError for what JSON cannot carry faithfully (non-finite floats,
    non-string keys, other Python objects).
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f'non-string key {k!r} at {path}')
            out[k] = plain(v, f'{path}.{k}')
        return out
    if isinstance(value, (list, tuple)):
        return [plain(v, f'{path}.{i}') for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f'non-finite float {value!r} at {path}')
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f'unsupported value of type {type(value).__name__} at {path}')


def diff(a, b, path='$'):
    """Differences between two plain values; int/float/bool types must match,
    dict key order is ignored. Returns a list of readable lines."""
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a.keys() - b.keys():
            out.append(f'{path}.{k}: only in first: {a[k]!r}')
        for k in b.keys() - a.keys():
            out.append(f'{path}.{k}: only in second: {b[k]!r}')
        for k in a.keys() & b.keys():
            out += diff(a[k], b[k], f'{path}.{k}')
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f'{path}: list lengths differ: {len(a)} vs {len(b)}')
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f'{path}.{i}')
    elif type(a) is not type(b) or a != b:
        out.append(f'{path}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})')
    return sorted(out)
