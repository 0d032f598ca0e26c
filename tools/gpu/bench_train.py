#!/usr/bin/env python3
"""Training throughput of the PyTorch reference loop (spec §7.4 as run.py runs it: f32, every
batch padded to the maximum lengths, training mode with dropout 0.1, the transformers-2.5
AdamW of ``tools/reference/train_reference.py``), on the same batches as
``device bench-train`` (the ``prepare-data`` features in file order).

    python3 tools/gpu/bench_train.py --features build/device/data/ruby_valid_train_features.jsonl \
        --model codebert --batch-size 32 --device cuda

Model: ``c2n_reference.Seq2Seq`` at full CodeBERT size (172.5 M parameters) with torch's
default random init. Prints one JSON line ``{"check": "bench_train", ...}``: the median step
time, samples/s, peak memory (``torch.cuda.max_memory_allocated`` and ``..._reserved``), and a
per-phase breakdown (data = host→device copy of the padded batch, forward, backward,
optimizer; the device is synchronised between phases).
"""

import argparse

import torch

from common import device, emit, import_reference, median, now, pad, read_features, sync

import_reference()

from c2n_reference import ModelConfig, Seq2Seq  # noqa: E402
from train_reference import ReferenceAdamW  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", default="build/device/data/ruby_valid_train_features.jsonl")
    ap.add_argument("--model", choices=["codebert", "small"], default="codebert")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-source-len", type=int, default=256)
    ap.add_argument("--max-target-len", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--phase-steps", type=int, default=5)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the reference is plain f32
        torch.backends.cudnn.allow_tf32 = False
    b = args.batch_size
    total = b * (args.warmup + args.steps + args.phase_steps + 1)
    feats = read_features(args.features, total)
    # run.py pads every example to the maximum lengths once (TensorDataset) and copies each
    # batch to the device in the loop.
    batches = []
    for start in range(0, len(feats), b):
        chunk = feats[start:start + b]
        batches.append((*pad([f["source_ids"] for f in chunk], args.max_source_len),
                        *pad([f["target_ids"] for f in chunk], args.max_target_len)))

    torch.manual_seed(0)
    start = now()
    model = Seq2Seq(ModelConfig() if args.model == "codebert" else ModelConfig.small()).to(dev)
    model.train()
    opt = ReferenceAdamW(list(model.named_parameters()))
    sync(dev)
    build_s = now() - start
    parameters = sum(p.numel() for p in model.parameters())

    step_index = 0

    def step(phases=None):
        nonlocal step_index
        batch = batches[step_index % len(batches)]
        step_index += 1
        t = now()
        x = tuple(tensor.to(dev, non_blocking=False) for tensor in batch)
        if phases is not None:
            sync(dev)
            phases["data"].append(now() - t)
            t = now()
        loss, _, _ = model(*x)
        if phases is not None:
            sync(dev)
            phases["forward"].append(now() - t)
            t = now()
        loss.backward()
        if phases is not None:
            sync(dev)
            phases["backward"].append(now() - t)
            t = now()
        opt.step(5e-5)
        opt.zero_grad()
        if phases is not None:
            sync(dev)
            phases["optimizer"].append(now() - t)
        return float(loss.detach())  # run.py reads loss.item() every step too

    t = now()
    for _ in range(args.warmup):
        step()
    sync(dev)
    warmup_s = now() - t
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, losses = [], []
    for _ in range(args.steps):
        t = now()
        losses.append(step())
        sync(dev)
        times.append(now() - t)
    memory = {"allocated_peak_bytes": None, "reserved_peak_bytes": None}
    if dev.type == "cuda":
        memory = {"allocated_peak_bytes": torch.cuda.max_memory_allocated(dev),
                  "reserved_peak_bytes": torch.cuda.max_memory_reserved(dev)}
    phases = {"data": [], "forward": [], "backward": [], "optimizer": []}
    for _ in range(args.phase_steps):
        step(phases)
    m = median(times)
    emit("bench_train", variant="torch f32 reference (padded)", device=dev.type, torch=torch.__version__,
         model=args.model, parameters=parameters, precision="f32", padding="reference", keep_pool=None,
         batch_size=b, max_source_len=args.max_source_len, max_target_len=args.max_target_len,
         steps=args.steps, step_seconds=times, median_step_s=m, samples_per_s=b / m,
         mean_padded_source_len=args.max_source_len, mean_padded_target_len=args.max_target_len,
         losses=losses, memory=memory,
         phases={f"{k}_s": median(v) for k, v in phases.items()} | {"steps": args.phase_steps}
         if args.phase_steps else None,
         model_build_s=build_s, warmup_s=warmup_s, ok=m == m)


if __name__ == "__main__":
    main()
