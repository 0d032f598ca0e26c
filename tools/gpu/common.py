"""Shared helpers of the GPU check scripts (tools/gpu/*.py).

- ``emit(check, **fields)``: one JSON result line on stdout (``{"check": ..., "impl": "torch"}``),
  the format ``tools/gpu/report.py`` collects from every step of ``scripts/gpu-check.sh``;
- ``import_reference()``: puts ``tools/reference`` on ``sys.path`` (the spec-written PyTorch
  reference: ``c2n_reference``, ``beam``, ``train_reference``);
- ``read_features(path, limit)``: the unpadded JSON-lines features of ``device prepare-data``;
- ``device(spec)`` and ``sync(dev)``.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
REFERENCE = os.path.join(ROOT, "tools", "reference")


def import_reference():
    if REFERENCE not in sys.path:
        sys.path.insert(0, REFERENCE)


def emit(check, **fields):
    line = {"check": check, "impl": "torch", **fields}
    print(json.dumps(line), flush=True)


def device(spec):
    import torch

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"device {spec}: torch sees no CUDA device")
    return dev


def sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def now():
    return time.perf_counter()


def median(values):
    v = sorted(values)
    if not v:
        return float("nan")
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def read_features(path, limit=None):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if limit is not None and len(out) >= limit:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out.append({"idx": row.get("idx", n - 1), "source_ids": row["source_ids"],
                             "target_ids": row["target_ids"]})
            except (ValueError, KeyError) as e:
                raise SystemExit(f"{path}:{n}: {e}")
    if not out:
        raise SystemExit(f"{path}: no features")
    return out


def pad(rows, length):
    """``[n, length]`` int64 ids (pad 1) and mask (1 real / 0 pad), on the CPU."""
    import torch

    ids = torch.ones((len(rows), length), dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)] = torch.tensor(row[:length])
        mask[r, : min(len(row), length)] = 1
    return ids, mask
