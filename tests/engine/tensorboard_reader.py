"""Reads every TensorBoard event file under a folder with the `tensorboard`
package's own loader (which migrates them as TensorBoard's UI reads them)
and prints its values as JSON lines: scalars as {"tag", "step", "value"},
images as {"tag", "step", "image": {"height", "width", "decoded": [h, w, c]
as OpenCV decodes the PNG, "crc32": of the PNG bytes}}, texts as {"tag",
"step", "text"}; the file version of the first event is checked.

Usage: python tensorboard_reader.py DIR
"""
import glob
import json
import os
import sys
import zlib

import cv2
import numpy as np
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

files = sorted(glob.glob(os.path.join(sys.argv[1], "events.out.tfevents.*")))
assert files, f"no event file in {sys.argv[1]}"
for path in files:
    events = list(EventFileLoader(path).Load())
    assert events[0].file_version == "brain.Event:2", events[0]
    for event in events[1:]:
        for value in event.summary.value:
            record = {"tag": value.tag, "step": event.step}
            if value.metadata.plugin_data.plugin_name == "images":
                # The image summary migrated into [width, height, PNG].
                width, height, png = value.tensor.string_val
                decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
                record["image"] = {
                    "height": int(height),
                    "width": int(width),
                    "decoded": list(decoded.shape),
                    "crc32": zlib.crc32(png),
                }
            elif value.metadata.plugin_data.plugin_name == "text":
                record["text"] = value.tensor.string_val[0].decode()
            elif value.HasField("simple_value"):
                record["value"] = value.simple_value
            else:
                # The loader migrates simple_value into a float32 tensor.
                record["value"] = float(value.tensor.float_val[0])
            print(json.dumps(record))
