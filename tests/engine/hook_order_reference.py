"""MMEngine 0.10.7's hook registration and its "Hooks will be executed in the
following order" table, for detc's hook order test (tests/it/train_iter.rs).

Usage: hook_order_reference.py  < requests  > answers  (one JSON line each)

A request is {"default_hooks": {...} | null, "custom_hooks": [...] | null},
the config sections as the resolved config holds them. Each is registered by
MMEngine's own `Runner.register_hooks` (default hooks merged into MMEngine's
defaults, then custom hooks, each inserted by priority) on a bare `Runner`
whose `__init__` is skipped, and the answer is {"table": get_hooks_info()}.

mmdet's package __init__ files import compiled mmcv ops and matplotlib, absent
here: the modules `visualization_hook.py` imports for drawing are stubbed, and
so is the visualizer's matplotlib figure, so that the `DetVisualizationHook`
class (its priority and overridden stages) is mmdet's own.
"""
import json
import os
import sys
import types

# stdout carries only the answers
RESULT = os.fdopen(os.dup(1), 'w')
os.dup2(2, 1)

import mmdet  # noqa: E402


def stub(name, path=None, **attrs):
    m = types.ModuleType(name)
    m.__path__ = [path] if path else []
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


root = os.path.dirname(mmdet.__file__)
stub('mmdet.engine', os.path.join(root, 'engine'))
stub('mmdet.engine.hooks', os.path.join(root, 'engine/hooks'))
stub('mmdet.datasets', TrackImgSampler=None)
stub('mmdet.datasets.samplers', TrackImgSampler=None)
stub('mmdet.structures', DetDataSample=None, TrackDataSample=None)
stub('mmdet.structures.bbox', BaseBoxes=None)
stub('mmdet.visualization', _get_adaptive_scales=None)
stub('mmdet.visualization.palette', _get_adaptive_scales=None)

from mmdet.engine.hooks import visualization_hook  # noqa: E402,F401  registers it
from mmengine.registry import DefaultScope  # noqa: E402
from mmengine.runner import Runner  # noqa: E402
from mmengine.utils import ManagerMixin  # noqa: E402
from mmengine.visualization import Visualizer  # noqa: E402

# mmdet configs set `default_scope = 'mmdet'`: hooks are looked up there first
DefaultScope.get_instance('detc-hook-order', scope_name='mmdet')


class FiguresStubbed(Visualizer):
    """A visualizer without matplotlib figures (nothing is drawn here)."""

    def __init__(self, name, **kwargs):
        ManagerMixin.__init__(self, name)


# the runner builds its visualizer before the hooks (DetVisualizationHook reads it)
FiguresStubbed.get_instance('visualizer')


def hooks_table(request):
    runner = Runner.__new__(Runner)
    runner._hooks = []
    runner.register_hooks(request.get('default_hooks'), request.get('custom_hooks'))
    return runner.get_hooks_info()


for line in sys.stdin:
    RESULT.write(json.dumps({'table': hooks_table(json.loads(line))}) + '\n')
    RESULT.flush()
