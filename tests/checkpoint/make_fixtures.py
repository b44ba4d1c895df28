"""Writes checkpoint fixtures with torch.save into OUT_DIR for tests/it/checkpoint.rs.

Usage: python make_fixtures.py OUT_DIR

For each fixture NAME it writes NAME (the checkpoint) and lists in
OUT_DIR/expected.json the state dict torch/MMEngine would load from it
(names after MMEngine's `^module\\.` revise_keys, dtype, shape, and the byte
range of the tensor's contiguous little-endian data in OUT_DIR/expected.bin).
"""
import collections
import json
import os
import pickle
import struct
import sys

import numpy as np
import torch
from mmengine.logging import MessageHub
from torch import nn

OUT = sys.argv[1]
torch.manual_seed(0)
blob = bytearray()
expected = {}


def record(fixture, state_dict):
    entries = []
    for name, t in state_dict.items():
        if name.startswith("module."):
            name = name[len("module."):]
        data = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        entries.append({"name": name, "dtype": str(t.dtype).replace("torch.", ""),
                        "shape": list(t.shape), "offset": len(blob), "len": len(data)})
        blob.extend(data)
    expected[fixture] = entries


def every_dtype():
    sd = {
        "f32": torch.randn(3, 4),
        "f64": torch.randn(2, 3, dtype=torch.float64),
        "f16": torch.randn(5).half(),
        "bf16": torch.randn(2, 2).bfloat16(),
        "i64": torch.randint(-2**40, 2**40, (4,)),
        "i32": torch.randint(-2**30, 2**30, (2, 2), dtype=torch.int32),
        "i16": torch.randint(-2**14, 2**14, (3,), dtype=torch.int16),
        "i8": torch.randint(-128, 127, (3,), dtype=torch.int8),
        "u8": torch.randint(0, 255, (2, 3), dtype=torch.uint8),
        "bool": torch.rand(6) > 0.5,
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 3),
    }
    base = torch.randn(4, 6)
    sd["base"] = base
    sd["transposed"] = base.t()            # same storage, non-contiguous
    sd["row_view"] = base[1:3]             # same storage, offset
    sd["strided"] = base[:, 1::2]          # offset + step
    sd["expanded"] = torch.randn(3, 1).expand(3, 4)  # stride 0
    return sd


def resnet18():
    def conv_bn(cin, cout, k, s):
        return [nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout)]

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.bn1 = conv_bn(cin, cout, 3, stride)
            self.conv2, self.bn2 = conv_bn(cout, cout, 3, 1)
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(*conv_bn(cin, cout, 1, stride))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            cin = 64
            for i, cout in enumerate([64, 128, 256, 512]):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
                cin = cout
            self.fc = nn.Linear(512, 1000)

    model = ResNet()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.num_batches_tracked += 7
    return model.state_dict()


class HistoryBuffer:
    """Stands in for mmengine.logging.HistoryBuffer: pickled as a class + __dict__ state."""

    def __init__(self):
        self._log_history = np.array([1.5, 2.5])
        self._count_history = np.array([1, 1])
        self.max_length = 1000000


def message_hub():
    """A real MMEngine MessageHub state, as the runner saves it (HistoryBuffers, numpy, getattr)."""
    hub = MessageHub.get_instance("detc-test")
    hub.update_scalar("train/loss", torch.tensor(0.5))
    hub.update_scalar("train/lr", 0.02)
    hub.update_info("iter", 10)
    hub.update_info("arr", np.zeros(2))
    return hub.state_dict()


def plain_pickles():
    """One plain object pickled with every protocol, 0 to 5."""
    shared = [1]
    plain = {
        "int": [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31, 2**63 - 1, -2**63, 2**64, -2**100],
        "float": [0.0, -1.5, 1e300, float("inf")],
        "str": ["", "ascii", "é ü 漢字 \n\\ 🎉"],
        "bytes": b"\x00\x01\xff",
        "none": None,
        "bools": [True, False],
        "tuples": [(), (1,), (1, 2, 3, 4)],
        "od": collections.OrderedDict([("z", 1), ("a", 2)]),
        "set": {3},
        "frozenset": frozenset({4}),
        "nested": {"l": [[1], {"k": "v"}]},
        "shared": [shared, shared],
    }
    for protocol in range(6):
        with open(os.path.join(OUT, f"plain_p{protocol}.pkl"), "wb") as f:
            pickle.dump(plain, f, protocol=protocol)


def mmengine_key_warning(module, msd):
    """MMEngine's load_state_dict warning for a state dict with keys missing
    (`3.bias`, and `1.num_batches_tracked` which it ignores) and unexpected
    (`extra.weight`, `3.scale`)."""
    import logging

    from mmengine.runner.checkpoint import load_state_dict

    sd = collections.OrderedDict((k, v) for k, v in msd.items() if k not in ("3.bias", "1.num_batches_tracked"))
    sd["extra.weight"] = torch.zeros(2)
    sd["3.scale"] = torch.zeros(1)
    messages = []

    class Capture(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = logging.getLogger("detc-test")
    logger.addHandler(Capture())
    logger.propagate = False
    load_state_dict(module, sd, logger=logger)
    with open(os.path.join(OUT, "mmengine_key_warning.txt"), "w") as f:
        f.write(messages[0])


def main():
    plain_pickles()
    sd = every_dtype()
    torch.save(sd, os.path.join(OUT, "dtypes.pth"))
    record("dtypes.pth", sd)

    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    msd = module.state_dict()
    torch.save(msd, os.path.join(OUT, "module.pth"))
    record("module.pth", msd)
    mmengine_key_warning(module, msd)

    wrapped = collections.OrderedDict(("module." + k, v) for k, v in msd.items())
    wrapped._metadata = msd._metadata
    ckpt = {
        "meta": {
            "epoch": 12, "iter": 87960, "seed": 2**40 + 3, "big": 2**70, "neg": -5, "lr": 1e-4,
            "mmdet_version": "3.3.0", "time": None, "flags": (True, False), "raw": b"\x00\xffbytes",
            "np_float": np.float64(0.25), "np_int": np.int64(7), "np_f32": np.float32(1.5),
            "np_array": np.arange(6, dtype=np.float32).reshape(2, 3),
            "counter": collections.Counter({"a": 2, "b": 1}),
            "tags": {"x", "y"},
            "dataset_meta": {"classes": ("square", "circle"), "palette": [(220, 20, 60), (0, 0, 142)]},
            "nested": {"a": {"b": {"c": [1, 2.5, "three", None]}}},
            "shared": [[1, 2]] * 2,
            "history": HistoryBuffer(),
        },
        "state_dict": wrapped,
        "message_hub": message_hub(),
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(4, 3, 3, 3)}},
                      "param_groups": [{"lr": 0.02, "momentum": 0.9, "params": [0, 1, 2]}]},
    }
    torch.save(ckpt, os.path.join(OUT, "mmengine.pth"))
    record("mmengine.pth", msd)

    # Some trainers (DETR, torchvision references) save {'model': state_dict, ...}.
    torch.save({"model": msd, "epoch": 3}, os.path.join(OUT, "model_key.pth"))
    record("model_key.pth", msd)
    torch.save({"epoch": 3, "note": "no weights"}, os.path.join(OUT, "no_weights.pth"))

    torch.save(sd, os.path.join(OUT, "legacy.pth"), _use_new_zipfile_serialization=False)
    record("legacy.pth", sd)

    rsd = resnet18()
    torch.save(rsd, os.path.join(OUT, "resnet18.pth"))
    record("resnet18.pth", rsd)

    # safetensors written by hand (the package is not installed): JSON header + raw bytes.
    st = {k: v for k, v in sd.items() if k in ("f32", "f16", "bf16", "i64", "bool", "scalar", "u8")}
    st["transposed"] = sd["transposed"].contiguous()
    header, data = {"__metadata__": {"format": "pt"}}, bytearray()
    for name, t in st.items():
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        dtype = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64", "bool": "BOOL", "uint8": "U8"}[str(t.dtype)[6:]]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data.extend(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(os.path.join(OUT, "tensors.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + bytes(data))
    record("tensors.safetensors", st)

    with open(os.path.join(OUT, "expected.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f)


main()
