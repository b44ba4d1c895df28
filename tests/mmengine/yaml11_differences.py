#!/usr/bin/env python
"""Prints the table in tests/fixtures/yaml11_differences/README.md: for every
`name: form` line of forms.yaml, what PyYAML gives (run for real, with the
loader MMEngine uses: yaml.load(..., Loader=CLoader)) and what the YAML 1.2
core schema gives (the tag-resolution regular expressions of YAML 1.2.2,
section 10.3.2).

    .venv-test/bin/python tests/mmengine/yaml11_differences.py          # print the table
    .venv-test/bin/python tests/mmengine/yaml11_differences.py --check  # README up to date?
"""
import math
import os
import re
import sys

import yaml

try:
    from yaml import CLoader as Loader
except ImportError:  # pragma: no cover
    from yaml import Loader

HERE = os.path.dirname(os.path.abspath(__file__))
FOLDER = os.path.join(os.path.dirname(HERE), 'fixtures', 'yaml11_differences')
BEGIN, END = '<!-- table:begin -->', '<!-- table:end -->'

# YAML 1.2.2, 10.3.2 Tag Resolution (core schema)
CORE = [
    (re.compile(r'null|Null|NULL|~|'), lambda s: None),
    (re.compile(r'true|True|TRUE|false|False|FALSE'), lambda s: s.lower() == 'true'),
    (re.compile(r'[-+]?[0-9]+'), lambda s: int(s, 10)),
    (re.compile(r'0o[0-7]+'), lambda s: int(s[2:], 8)),
    (re.compile(r'0x[0-9a-fA-F]+'), lambda s: int(s[2:], 16)),
    (re.compile(r'[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?'), float),
    (re.compile(r'[-+]?(\.inf|\.Inf|\.INF)'), lambda s: float(s.replace('.', '').lower())),
    (re.compile(r'\.nan|\.NaN|\.NAN'), lambda s: math.nan),
]


def core(form: str):
    if form.startswith('!'):
        tag = form.split()[0]
        return f'error: unknown tag `{tag}`'
    for pattern, convert in CORE:
        if pattern.fullmatch(form):
            return convert(form)
    return form


def show(v) -> str:
    if isinstance(v, str) and v.startswith('error: '):
        return v[len('error: '):]
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return f'bool `{v}`'
    if isinstance(v, float) and math.isnan(v):
        return 'float `nan`'
    return f'{type(v).__name__} `{v!r}`'


def rows():
    with open(os.path.join(FOLDER, 'forms.yaml')) as f:
        for line in f:
            if not line.strip() or line.startswith('#'):
                continue
            name, _, form = line.rstrip('\n').partition(':')
            form = form.strip()
            try:
                py = yaml.load(f'v: {form}\n', Loader=Loader)['v']
            except yaml.YAMLError as e:
                py = f'error: {type(e).__name__}'
            c = core(form)
            same = type(py) is type(c) and (py == c or (
                isinstance(py, float) and math.isnan(py) and math.isnan(c)))
            yield name, form, show(py), show(c), same


def table() -> str:
    out = ['| form | PyYAML 6 (MMEngine) | YAML 1.2 core (detc) | same? |',
           '| --- | --- | --- | --- |']
    for name, form, py, c, same in rows():
        shown = f'`{form}`' if form else '(empty)'
        out.append(f'| {shown} | {py} | {c} | {"yes" if same else "**no**"} |')
    return '\n'.join(out) + '\n'


def main() -> int:
    text = table()
    if '--check' not in sys.argv[1:]:
        sys.stdout.write(text)
        return 0
    with open(os.path.join(FOLDER, 'README.md')) as f:
        readme = f.read()
    current = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip('\n') + '\n'
    if current != text:
        print('README.md table is stale; regenerate it with this script')
        return 1
    print(f'ok   yaml11_differences table up to date ({text.count(chr(10)) - 2} forms, PyYAML {yaml.__version__})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
