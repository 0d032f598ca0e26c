#!/usr/bin/env python3
"""The card's measured matrix-product peak: median TFLOP/s of an N×N×N product in torch
(bf16 by default; 3 warm-ups, then ``--repeats`` timed products, each timed alone).

    python3 tools/gpu/peak_matmul.py [--n 8192] [--dtype bfloat16] [--device cuda]

Prints one JSON line ``{"check": "peak_matmul", "tflops": ...}``; MFU figures of
``tools/gpu/report.py`` divide by it.
"""

import argparse

import torch

from common import device, emit, median, now, sync


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = device(args.device)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn((args.n, args.n), generator=gen, device=dev, dtype=dtype)
    b = torch.randn((args.n, args.n), generator=gen, device=dev, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(dev)
    times = []
    for _ in range(args.repeats):
        start = now()
        a @ b
        sync(dev)
        times.append(now() - start)
    t = median(times)
    flops = 2.0 * args.n ** 3
    emit("peak_matmul", device=dev.type,
         gpu=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
         n=args.n, dtype=args.dtype, median_s=t, tflops=flops / t / 1e12,
         best_tflops=flops / min(times) / 1e12, ok=True)


if __name__ == "__main__":
    main()
