#!/usr/bin/env python3
"""Summarises a Chrome trace of training steps, from `detc bench` with
`DETC_TRACE=FILE` or from the references' `--trace FILE` (both written by
libtorch's Kineto profiler), so the two sides are counted the same way.

    python3 scripts/trace_summary.py TRACE --steps N [--top 25] [--json]

Per step: the operators the program called (the outermost ones: an op
nested in another is part of its caller), by name; the host
synchronisations among all operators (`aten::_local_scalar_dense`, behind
`item` and every scalar read, and `aten::nonzero`, also behind boolean
indexing); and with CUDA activity, the kernels launched, the time the GPU
was busy (the union of its kernels, copies and sets) against the traced
span, and the host's time in CUDA calls that wait for the device
(stream, event and device synchronisations, blocking copies). A detc
trace holds `section: NAME` marks at the ends of the `DETC_PROFILE`
sections, placed without synchronising; then the same is split by section
(the host's time between marks, and the GPU time of the kernels each
section launched). Standard library only.
"""
import bisect
import argparse
import collections
import json

SYNC_OPS = ('aten::_local_scalar_dense', 'aten::nonzero')
GPU_CATS = ('kernel', 'gpu_memcpy', 'gpu_memset')
# CUDA runtime calls that block the host until the device gets there (a
# blocking copy in torch is cudaMemcpyAsync then cudaStreamSynchronize).
WAITING_CALLS = ('cudaStreamSynchronize', 'cudaDeviceSynchronize', 'cudaEventSynchronize')


def is_op(e):
    name = e['name']
    return (e.get('cat') == 'cpu_op' and '::' in name
            and not name.startswith(('autograd::', 'ProfilerStep')))


def outermost(ops):
    """The ops of one thread not nested in another op."""
    out, end = [], -1.0
    for e in sorted(ops, key=lambda e: (e['ts'], -e.get('dur', 0))):
        if e['ts'] >= end:
            out.append(e)
            end = e['ts'] + e.get('dur', 0)
    return out


def union_us(intervals):
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(intervals):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None:
        total += cur_end - cur_start
    return total


def summarise(trace, steps):
    events = [e for e in trace.get('traceEvents', []) if e.get('ph') == 'X']
    per_thread = collections.defaultdict(list)
    for e in events:
        if is_op(e):
            per_thread[e['tid']].append(e)
    top_ops = [e for ops in per_thread.values() for e in outermost(ops)]
    top = collections.Counter(e['name'] for e in top_ops)
    syncs = sum(1 for ops in per_thread.values() for e in ops if e['name'] in SYNC_OPS)
    host = [e for e in events if e.get('cat') in ('cpu_op', 'cuda_runtime', 'cuda_driver')]
    gpu = [e for e in events if e.get('cat') in GPU_CATS]
    out = {
        'steps': steps,
        'ops_per_step': sum(top.values()) / steps,
        'syncs_per_step': syncs / steps,
        'top_ops_per_step': {k: v / steps for k, v in top.most_common()},
    }
    sections = by_section(events, top_ops, steps)
    if sections:
        out['sections'] = sections
    if gpu:
        span = [e['ts'] for e in host + gpu], [e['ts'] + e.get('dur', 0) for e in host + gpu]
        span_us = max(span[1]) - min(span[0])
        waits = [e for e in events if e.get('cat') in ('cuda_runtime', 'cuda_driver')
                 and (e['name'] in WAITING_CALLS or e['name'] == 'cudaMemcpy')]
        out.update({
            'span_ms_per_step': span_us / steps / 1e3,
            'gpu_busy_ms_per_step': union_us((e['ts'], e['ts'] + e.get('dur', 0)) for e in gpu) / steps / 1e3,
            'kernels_per_step': sum(1 for e in gpu if e.get('cat') == 'kernel') / steps,
            'host_waiting_ms_per_step': sum(e.get('dur', 0) for e in waits) / steps / 1e3,
            'host_waits_per_step': len(waits) / steps,
            'gpu_top_kernels_ms_per_step': dict(collections.Counter({
                k: v / steps / 1e3 for k, v in sum_by_name(e for e in gpu if e.get('cat') == 'kernel').items()
            }).most_common(15)),
        })
    return out


def by_section(events, top_ops, steps):
    """Per `section: NAME` mark, in first-mark order: the host's time
    since the previous mark, the outermost operators and host
    synchronisations whose start falls there, and the kernels launched from
    there with their GPU time; `None` without marks."""
    marks = sorted((e['ts'], e['name'][len('section: '):]) for e in events
                   if e.get('cat') == 'user_annotation' and e['name'].startswith('section: '))
    if not marks:
        return None
    times = [t for t, _ in marks]
    order = list(dict.fromkeys(name for _, name in marks))
    rows = {name: collections.Counter() for name in order}

    def section(ts):
        i = bisect.bisect_left(times, ts)
        return marks[i][1] if i < len(marks) else None

    for (t0, _), (t1, name) in zip([(None, None)] + marks[:-1], marks):
        if t0 is not None:
            rows[name]['host_us'] += t1 - t0
    for e in top_ops:
        name = section(e['ts'])
        if name:
            rows[name]['ops'] += 1
    for e in events:
        if e.get('cat') == 'cpu_op' and e['name'] in SYNC_OPS and section(e['ts']):
            rows[section(e['ts'])]['syncs'] += 1
    launch = {e['args']['correlation']: e['ts'] for e in events
              if e.get('cat') in ('cuda_runtime', 'cuda_driver') and 'correlation' in e.get('args', {})}
    for e in events:
        if e.get('cat') in GPU_CATS and e.get('args', {}).get('correlation') in launch:
            name = section(launch[e['args']['correlation']])
            if name:
                rows[name]['kernels'] += e.get('cat') == 'kernel'
                rows[name]['gpu_us'] += e.get('dur', 0)
    return {name: {'host_ms': c['host_us'] / steps / 1e3, 'ops': c['ops'] / steps, 'syncs': c['syncs'] / steps,
                   'kernels': c['kernels'] / steps, 'gpu_ms': c['gpu_us'] / steps / 1e3}
            for name, c in rows.items()}


def sum_by_name(events):
    total = collections.Counter()
    for e in events:
        total[e['name'][:80]] += e.get('dur', 0)
    return total


def main():
    p = argparse.ArgumentParser()
    p.add_argument('trace')
    p.add_argument('--steps', type=int, required=True, help='training steps the trace holds')
    p.add_argument('--top', type=int, default=25, help='operators to list')
    p.add_argument('--json', action='store_true')
    args = p.parse_args()
    with open(args.trace) as f:
        s = summarise(json.load(f), args.steps)
    if args.json:
        print(json.dumps(s))
        return
    print(f"per step: {s['ops_per_step']:.0f} operators called, {s['syncs_per_step']:.0f} host synchronisations")
    if 'span_ms_per_step' in s:
        print(f"  GPU busy {s['gpu_busy_ms_per_step']:.1f} of {s['span_ms_per_step']:.1f} ms, "
              f"{s['kernels_per_step']:.0f} kernels; host waiting on the device "
              f"{s['host_waiting_ms_per_step']:.1f} ms in {s['host_waits_per_step']:.0f} calls")
        for name, ms in s['gpu_top_kernels_ms_per_step'].items():
            print(f"  {ms:8.2f} ms  {name}")
    if 'sections' in s:
        print('  per section (host time between marks; the GPU time of the kernels it launched):')
        for name, c in s['sections'].items():
            print(f"  {c['host_ms']:8.2f} ms host {c['ops']:6.0f} ops {c['syncs']:4.0f} syncs "
                  f"{c['kernels']:6.0f} kernels {c['gpu_ms']:8.2f} ms GPU  {name}")
    for name, n in list(s['top_ops_per_step'].items())[:args.top]:
        print(f"  {n:7.1f}  {name}")


if __name__ == '__main__':
    main()
