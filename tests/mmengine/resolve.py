#!/usr/bin/env python
"""MMEngine reference resolver: what MMDetection's tools/train.py makes of a
config file and its --cfg-options.

    .venv-test/bin/python tests/mmengine/resolve.py < requests.jsonl

Reads JSON lines on stdin, one request each:

    {"file": "<path>", "cfg_options": ["k=v", ...]}

and answers each with one JSON line on stdout (flushed at once, so a caller
may hold the process open and talk to it line by line):

    {"ok": <resolved dict>}   or   {"error": "<ExceptionType>: <message>"}

Resolution is tools/train.py's: Config.fromfile(file); the cfg_options tokens
are parsed by an argparse parser with `--cfg-options nargs='+'
action=DictAction`, then cfg.merge_from_dict(args.cfg_options). The result is
cfg.to_dict() with tuples written as lists; ints stay ints and floats stay
floats (JSON output keeps `1.0` distinct from `1`). Values JSON cannot carry
(non-finite floats, non-string keys, other objects) are reported as an error
("ValueError: non-finite float ..."), since detc must not accept them either.

Every exception is caught per request (RecursionError for base cycles,
SystemExit from argparse included), so one bad case does not stop the batch.
One process serves the whole batch: importing mmengine is slow.
"""
import argparse
import contextlib
import io
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import plain  # noqa: E402

from mmengine.config import Config, DictAction  # noqa: E402


def use_fast_tempdir() -> None:
    """MMEngine writes every config file it reads to a fresh temporary folder
    (for its textual substitutions). On a disk-backed /tmp a base cycle, which
    recurses ~1000 files deep, then takes seconds; memory-backed /dev/shm
    makes it instant. Results do not depend on where these files go, and an
    explicit TMPDIR is respected."""
    shm = '/dev/shm'
    if 'TMPDIR' not in os.environ and os.path.isdir(shm) and os.access(shm, os.W_OK):
        tempfile.tempdir = shm


class ArgumentError(Exception):
    """argparse's complaint, instead of its SystemExit."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ArgumentError(message)


def make_parser() -> argparse.ArgumentParser:
    # The --cfg-options argument exactly as MMDetection 3.3.0 tools/train.py
    # declares it.
    parser = Parser(prog='train.py', add_help=False)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser


def resolve(request: dict) -> dict:
    file = request['file']
    tokens = list(request.get('cfg_options') or [])
    cfg = Config.fromfile(file)
    if tokens:
        args = make_parser().parse_args(['--cfg-options', *tokens])
        if args.cfg_options is not None:
            cfg.merge_from_dict(args.cfg_options)
    return {'ok': plain(cfg.to_dict())}


def describe(e: BaseException) -> str:
    return f'{type(e).__name__}: {e}'


def main() -> int:
    use_fast_tempdir()
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            # Anything MMEngine (or a custom import) prints goes to stderr,
            # so stdout carries only the answers.
            with contextlib.redirect_stdout(sys.stderr):
                answer = resolve(request)
            text = json.dumps(answer, allow_nan=False)
        except (Exception, SystemExit, RecursionError) as e:  # noqa: B902
            text = json.dumps({'error': describe(e)})
        out.write(text + '\n')
        out.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main())
