#!/usr/bin/env python3
"""Decoding time of the PyTorch reference (spec §6.1): one example at a time, source padded to
256, the whole prefix re-run through the decoder at every step, the per-example ``Beam`` of
``tools/reference/beam.py`` with its state on the device (as the original keeps it on the
GPU). Same checkpoint and sources as ``device bench-decode``, whose n-best ids are compared
with the ones written here.

    python3 tools/gpu/bench_decode.py --checkpoint /tmp/c2n-codebert-random \
        --sources build/device/data/ruby_test_features.jsonl --examples 64 \
        --time-budget 150 --out /tmp/torch_nbest.json --device cuda

``--select sort`` (default) ranks by the documented tie rule (stable sort, as the fixtures and
the Rust crate); ``topk`` uses ``torch.topk`` like the original code (same result unless exact
ties). Decoding stops early, after the example in progress, once ``--time-budget`` seconds
are spent; the result line says how many examples were decoded. Prints one JSON line
``{"check": "bench_decode", ...}`` with a per-phase breakdown (encode, decoder steps incl.
log-softmax, beam bookkeeping incl. top-K).
"""

import argparse
import json

import torch

from common import device, emit, import_reference, now, pad, read_features, sync

import_reference()

import beam as beam_module  # noqa: E402
from c2n_reference.checkpoint import load_checkpoint  # noqa: E402


def device_beam(dev):
    """``beam.Beam`` with its score and token tensors on ``dev`` (the reference's Beam uses
    CUDA tensors); ``beam.beam_search`` builds whatever ``beam.Beam`` names."""

    class DeviceBeam(beam_module.Beam):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.scores = self.scores.to(dev)
            self.toks = [t.to(dev) for t in self.toks]

    return DeviceBeam


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--sources", default="build/device/data/ruby_test_features.jsonl")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--beam-size", type=int, default=10)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-source-len", type=int, default=256)
    ap.add_argument("--select", choices=["sort", "topk"], default="sort")
    ap.add_argument("--time-budget", type=float, default=0.0, help="seconds; 0 = no limit")
    ap.add_argument("--out", help="write the n-best ids and scores here ({\"nbest\": [[ids, ...], ...], \"scores\": [[s, ...], ...]})")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    dev = device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    feats = read_features(args.sources, args.examples or None)
    model = load_checkpoint(args.checkpoint, strict=False).to(dev).eval()
    select = beam_module.top_k if args.select == "sort" else beam_module.torch_topk
    beam_module.Beam = device_beam(dev)
    phases = {"encode": 0.0, "step": 0.0}

    def decode(source, max_length):
        ids, mask = pad([source], args.max_source_len)
        t = now()
        with torch.no_grad():
            ids, mask = ids.to(dev), mask.to(dev)
            ctx = model.encode(ids, mask).repeat(args.beam_size, 1, 1)
            ctx_mask = mask.repeat(args.beam_size, 1)
            sync(dev)
            phases["encode"] += now() - t

            def next_logprobs(prefix):
                t = now()
                logp = model.next_token_log_probs(prefix, ctx, ctx_mask)
                sync(dev)
                phases["step"] += now() - t
                return logp

            return beam_search(next_logprobs, max_length)

    def beam_search(next_logprobs, max_length):
        return beam_module.beam_search(next_logprobs, args.beam_size, max_length, select=select)

    decode(feats[0]["source_ids"], min(4, args.max_length))  # warm-up
    phases = {"encode": 0.0, "step": 0.0}
    outputs, start = [], now()
    for f in feats:
        outputs.append(decode(f["source_ids"], args.max_length))
        if args.time_budget and now() - start > args.time_budget:
            break
    sync(dev)
    total = now() - start
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"nbest": [[h["ids"] for h in o["hypotheses"]] for o in outputs],
                       "scores": [[float(h["score"]) for h in o["hypotheses"]] for o in outputs]}, f)
    steps = sorted(o["steps"] for o in outputs)
    emit("bench_decode", variant=f"torch per-example reference Beam ({args.select})", device=dev.type,
         torch=torch.__version__, examples=len(outputs), requested_examples=len(feats),
         stopped_by_time_budget=len(outputs) < len(feats), batch_size=1, beam_size=args.beam_size,
         max_length=args.max_length, seconds=total, examples_per_s=len(outputs) / total,
         phases={"encode_s": phases["encode"], "session_step_s": phases["step"],
                 "beam_select_s": total - phases["encode"] - phases["step"]},
         median_decode_steps=steps[len(steps) // 2], ok=True)


if __name__ == "__main__":
    main()
