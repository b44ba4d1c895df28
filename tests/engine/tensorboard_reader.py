"""Reads every TensorBoard event file under a folder with the `tensorboard`
package's own loader and prints its scalars as JSON lines
{"tag", "step", "value"}; the file version of the first event is checked.

Usage: python tensorboard_reader.py DIR
"""
import glob
import json
import os
import sys

from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

files = sorted(glob.glob(os.path.join(sys.argv[1], "events.out.tfevents.*")))
assert files, f"no event file in {sys.argv[1]}"
for path in files:
    events = list(EventFileLoader(path).Load())
    assert events[0].file_version == "brain.Event:2", events[0]
    for event in events[1:]:
        for value in event.summary.value:
            # The loader migrates simple_value into a float32 tensor.
            if value.HasField("simple_value"):
                scalar = value.simple_value
            else:
                scalar = float(value.tensor.float_val[0])
            print(json.dumps({"tag": value.tag, "step": event.step, "value": scalar}))
