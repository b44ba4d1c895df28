#!/usr/bin/env python
"""Checks schema/detc.schema.json with an independent JSON Schema validator
(the `jsonschema` package, draft 2020-12):

* the schema itself is a valid draft 2020-12 schema;
* every bundled YAML file (each base file alone, since the schema accepts
  partial files) validates, as a YAML language server would check it;
* typos that an editor should flag are rejected: an unknown component type,
  a wrong value type, an out-of-range value.

    .venv-test/bin/python tests/mmengine/validate_schema.py
"""
import json
import os
import sys

import yaml
from jsonschema import Draft202012Validator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> int:
    with open(os.path.join(REPO, 'schema', 'detc.schema.json')) as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    failures = []
    for folder, _, files in os.walk(os.path.join(REPO, 'configs')):
        for name in sorted(files):
            if not name.endswith('.yaml'):
                continue
            path = os.path.join(folder, name)
            with open(path) as f:
                text = f.read()
            if '{{' in text:  # references are resolved before validation
                continue
            for error in validator.iter_errors(yaml.safe_load(text)):
                failures.append(f'{os.path.relpath(path, REPO)}: {list(error.absolute_path)}: {error.message}')
    bad = {
        'unknown type': {'model': {'type': 'QueryInstt'}},
        'wrong type': {'optim_wrapper': {'type': 'OptimWrapper', 'optimizer': {'type': 'AdamW', 'lr': 'fast'}}},
        'out of range': {'train_dataloader': {'batch_size': 0}},
    }
    for what, config in bad.items():
        if validator.is_valid(config):
            failures.append(f'the schema accepts a config with an {what}: {config}')
    for line in failures:
        print(line)
    if not failures:
        print('schema/detc.schema.json: valid draft 2020-12; bundled files validate; typos rejected')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
