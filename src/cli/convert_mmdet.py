"""`detc convert`: an MMDetection Python config and its `_base_` files as
detc YAML files, one per file, keeping the inheritance.

`detc convert` runs this as `python -c <this file> CONFIG` with the Python of
the user's MMDetection environment and writes what it prints: one JSON
object, `{"files": [{"source", "target", "yaml"}]}`, `target` relative to
the folder that holds the whole tree. Errors go to stderr with exit 1.

Each file's own assignments are evaluated as MMEngine evaluates them
(`Config._file2dict`): the `_base_` assignment taken out, `_base_` bound to
the merged bases (so `_base_.model.backbone` and `{{_base_.x}}` read their
values), modules and functions dropped. The YAML keeps `_base_` (with `.py`
written `.yaml`), `_delete_` and the helper variables; tuples become lists.
MMEngine is needed only by files that read `_base_` values. A file whose
code changes its bases in place (`_base_.optim_wrapper.type = ...`), which
MMEngine then merges onto, is written as the difference between its bases
and MMEngine's result (with `_delete_` where keys went away).
"""
import ast
import json
import os
import re
import sys
import types

import yaml

BASE_KEY = '_base_'
DELETE_KEY = '_delete_'
BASE_VAR = re.compile(r'''(['"]?)\{\{\s*_base_\.([\w.]+)\s*\}\}\1''')
CONFIG_EXTENSIONS = ('.py', '.yaml', '.yml', '.json')


def fail(message):
    print(f'error: {message}', file=sys.stderr)
    sys.exit(1)


def read(path):
    try:
        with open(path, encoding='utf-8') as f:
            return f.read()
    except OSError as e:
        fail(f'cannot read `{path}`: {e.strerror}')


def base_assignment(path, tree):
    """The `_base_` value of a parsed Python config (a string or a list), or None."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == BASE_KEY for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                fail(f'{path}: `_base_` must be a file name or a list of them, written literally')
    return None


def base_paths(path, bases):
    names = [bases] if isinstance(bases, str) else list(bases or [])
    out = []
    for name in names:
        if not isinstance(name, str):
            fail(f'{path}: `_base_` holds {name!r}, not a file name')
        if not name.endswith(CONFIG_EXTENSIONS):
            fail(f'{path}: base `{name}` is not a .py, .yaml or .json config')
        full = os.path.normpath(os.path.join(os.path.dirname(path), name))
        if not os.path.isfile(full):
            fail(f'{path}: base `{name}` not found (looked for `{full}`)')
        out.append(full)
    return out


def merged_bases(paths):
    """What MMEngine binds `_base_` to: the bases resolved and merged."""
    try:
        from mmengine.config import Config, ConfigDict
    except ImportError:
        fail('this config reads `_base_` values, which needs MMEngine: pass the '
             "--python of MMDetection's environment")
    merged = {}
    for path in paths:
        merged.update(Config.fromfile(path).to_dict())
    return ConfigDict(merged)


def own_python(path, text):
    """The file's own assignments and its `_base_` value."""
    if 'read_base' in text:
        fail(f'{path}: a new-style (lazy import, `with read_base():`) config; detc converts '
             'the `_base_ = [...]` style that MMDetection 3.x ships')
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        fail(f'{path}:{e.lineno}: {e.msg}')
    bases = base_assignment(path, tree)
    uses_base = 'base_.' in text
    if uses_base:
        text = BASE_VAR.sub(lambda m: BASE_KEY + '.' + m.group(2), text)
        tree = ast.parse(text, filename=path)
    tree.body = [n for n in tree.body if not (
        isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == BASE_KEY for t in n.targets))]
    base = merged_bases(base_paths(path, bases)) if uses_base else None
    # `plain` copies: the code may change `base` in place, the copy stays.
    pristine = plain(base, path) if uses_base else None
    namespace = {BASE_KEY: base}
    try:
        exec(compile(tree, path, 'exec'), namespace)
    except Exception as e:  # the user's code: report where
        fail(f'{path}: evaluating it failed: {type(e).__name__}: {e}')
    if uses_base and not same(plain(base, path), pristine):
        return from_resolved(path, pristine, bases)
    own = {}
    for key, value in namespace.items():
        if key == BASE_KEY or key.startswith('__'):
            continue
        if isinstance(value, (types.FunctionType, types.ModuleType, type)):
            continue
        own[key] = plain(value, f'{path}: `{key}`')
    return own, bases


def same(a, b):
    """Equal plain values, 1, 1.0 and True told apart."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def from_resolved(path, pristine, bases):
    """The own content of a file whose code changed its bases in place
    (`_base_.optim_wrapper.type = ...`, `del _base_.model`), which MMEngine
    merges onto: what must be merged onto the unchanged bases to give
    MMEngine's result. A top-level key it removed cannot be said in YAML:
    then the file is written resolved, without `_base_`."""
    from mmengine.config import Config
    final = plain(Config.fromfile(path).to_dict(), path)
    if any(k not in final for k in pristine):
        print(f'warning: {path} removes keys of its bases in place; its YAML is written '
              'resolved, without `_base_`', file=sys.stderr)
        return final, None
    print(f'note: {path} changes its bases in place; its YAML holds what it changes',
          file=sys.stderr)
    own = {k: delta(pristine[k], v) if k in pristine else v
           for k, v in final.items() if k not in pristine or not same(pristine[k], v)}
    return own, bases


def delta(base, final):
    """A value that, merged onto `base` as MMEngine merges, gives `final`."""
    if isinstance(base, dict) and isinstance(final, dict):
        if any(k not in final for k in base):
            return {DELETE_KEY: True, **final}
        return {k: delta(base[k], v) if k in base else v
                for k, v in final.items() if k not in base or not same(base[k], v)}
    return final


def own_yaml(path, text):
    """A YAML or JSON base's own content (it is copied as YAML)."""
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        fail(f'{path}: a config file must hold a mapping')
    return plain(data, path), data.get(BASE_KEY)


def plain(value, where):
    if isinstance(value, dict):
        return {str(k): plain(v, f'{where}.{k}') for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f'{where}.{i}') for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    fail(f'{where}: a {type(value).__name__} value cannot be written to YAML')


def as_yaml_name(name):
    stem, ext = os.path.splitext(name)
    return stem + '.yaml' if ext in ('.py', '.json', '.yml') else name


def convert(top):
    """Every file of the tree: (source path, own content with `_base_` rewritten)."""
    done, order, pending = {}, [], [os.path.abspath(top)]
    while pending:
        path = pending.pop(0)
        if path in done:
            continue
        text = read(path)
        own, bases = own_python(path, text) if path.endswith('.py') else own_yaml(path, text)
        own.pop(BASE_KEY, None)
        if bases:
            written = (as_yaml_name(bases) if isinstance(bases, str)
                       else [as_yaml_name(b) for b in bases])
            own = {BASE_KEY: written, **own}
            pending.extend(base_paths(path, bases))
        done[path] = own
        order.append(path)
    return [(p, done[p]) for p in order]


# Plain scalars YAML 1.2's core schema (detc) reads as something other than a
# string; PyYAML (YAML 1.1) leaves some of them unquoted, e.g. `1e-4`, `0o17`.
CORE_SCHEMA_NON_STRING = re.compile(r'''
    [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+
    | [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
    | [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN)
    | null|Null|NULL|~ | true|True|TRUE|false|False|FALSE''', re.VERBOSE)


class Dumper(yaml.SafeDumper):
    """PyYAML's writer, quoting every string either YAML reads otherwise."""

    def represent_str(self, data):
        if CORE_SCHEMA_NON_STRING.fullmatch(data):
            return self.represent_scalar('tag:yaml.org,2002:str', data, style="'")
        return super().represent_str(data)


Dumper.add_representer(str, Dumper.represent_str)


def main():
    if len(sys.argv) != 2:
        fail('usage: convert_mmdet.py CONFIG.py')
    top = sys.argv[1]
    if not os.path.isfile(top):
        fail(f'`{top}`: no such config file')
    files = convert(top)
    root = os.path.commonpath([os.path.dirname(p) for p, _ in files])
    out = []
    for path, content in files:
        rel = os.path.relpath(path, root)
        header = f'# Converted by `detc convert` from {rel}\n'
        text = yaml.dump(content, Dumper=Dumper, sort_keys=False, default_flow_style=None,
                         allow_unicode=True, width=100) if content else ''
        out.append({'source': path, 'target': as_yaml_name(rel), 'yaml': header + text})
    json.dump({'files': out}, sys.stdout)


main()
