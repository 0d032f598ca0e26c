#!/usr/bin/env python3
"""Time the PyTorch reference beam search (tools/reference/beam.py) on the decode-bench files.

It decodes the same examples with the same checkpoint as ``benches/decode.rs``: one example
at a time, the full prefix recomputed at every step (reference-semantics section 6.1), on
the CPU. Run the Rust bench first; it writes the files this script reads::

    cargo bench --bench decode -- --sample-size 10
    python3 tools/bench_reference_decode.py            # defaults: target/bench-data/decode/

``--config mid`` reads the files of ``C2N_DECODE_CONFIG=mid cargo bench --bench decode``
(``target/bench-data/decode-mid/``: the hidden-256, 6-decoder-layer random model).

Options: ``--select sort`` uses beam.py's stable sort (the documented tie rule, what the
fixtures use); ``--select topk`` (default) uses ``torch.topk`` as the original code does.
The script prints the mean seconds per example, writes the n-best ids to ``--output``
(JSON) and, when the Rust bench has written ``rust_nbest.json`` next to the inputs, compares
the two n-best lists example by example (and the first step where the best hypotheses part).
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "reference"))

from beam import beam_search, top_k, torch_topk  # noqa: E402
from c2n_reference import load_checkpoint  # noqa: E402

ROOT = os.path.dirname(HERE)
BENCH_DATA = os.path.join(ROOT, "target", "bench-data")
# The Rust bench's default checkpoint: the parity-fixture model when present.
FIXTURE_MODEL = os.path.join(ROOT, "crates", "c2n-model", "tests", "data", "small")


def default_checkpoint(config: str, bench_dir: str) -> str:
    """The checkpoint ``benches/decode.rs`` uses for ``C2N_DECODE_CONFIG=config``."""
    if config == "small" and os.path.exists(os.path.join(FIXTURE_MODEL, "config.json")):
        return FIXTURE_MODEL
    return os.path.join(bench_dir, "checkpoint")


def compare_nbest(ours, rust) -> None:
    """Print how many examples have identical n-best ids, and where the best ones part."""
    same = 0
    for i, (a, b) in enumerate(zip(ours, rust)):
        if a == b:
            same += 1
            continue
        best_a, best_b = a[0], b[0]
        part = next((t for t, (x, y) in enumerate(zip(best_a, best_b)) if x != y), None)
        where = (
            f"best hypotheses part at step {part}"
            if part is not None
            else f"best hypotheses equal ({len(best_a)} vs {len(best_b)} ids), lower ranks differ"
        )
        print(f"n-best example {i}: differs from Rust ({where})")
    print(f"n-best ids identical to Rust on {same} of {min(len(ours), len(rust))} examples")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config",
        choices=["small", "mid"],
        default="small",
        help="which bench files: C2N_DECODE_CONFIG of the Rust run (small: the default)",
    )
    parser.add_argument("--checkpoint", default=None, help="default: the Rust bench's")
    parser.add_argument("--inputs", default=None, help="default: BENCH_DIR/inputs.json")
    parser.add_argument("--examples", type=int, default=4)
    parser.add_argument("--beam-size", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over the examples")
    parser.add_argument("--select", choices=["topk", "sort"], default="topk")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--output", default=None, help="default: BENCH_DIR/reference_nbest.json")
    args = parser.parse_args()
    bench_dir = os.path.join(BENCH_DATA, "decode" if args.config == "small" else "decode-mid")
    args.checkpoint = args.checkpoint or default_checkpoint(args.config, bench_dir)
    args.inputs = args.inputs or os.path.join(bench_dir, "inputs.json")
    args.output = args.output or os.path.join(bench_dir, "reference_nbest.json")

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint, strict=False).eval()
    with open(args.inputs) as f:
        inputs = json.load(f)
    length = inputs["max_source_length"]
    sources = inputs["source_ids"][: args.examples]
    select = torch_topk if args.select == "topk" else top_k

    def decode(source):
        ids = torch.tensor([source + [1] * (length - len(source))], dtype=torch.long)
        mask = torch.tensor([[1] * len(source) + [0] * (length - len(source))], dtype=torch.long)
        with torch.no_grad():
            memory = model.encode(ids, mask)
            ctx = memory.repeat(args.beam_size, 1, 1)
            ctx_mask = mask.repeat(args.beam_size, 1)
            return beam_search(
                lambda prefix: model.next_token_log_probs(prefix, ctx, ctx_mask),
                args.beam_size,
                args.max_length,
                select=select,
            )

    decode(sources[0])  # warm-up
    passes = []
    outputs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        outputs = [decode(source) for source in sources]
        passes.append(time.perf_counter() - start)
    per_example = statistics.mean(passes) / len(sources)
    print(
        f"pytorch reference beam ({args.select}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads): {len(sources)} examples, beam {args.beam_size}, "
        f"max length {args.max_length}: {statistics.mean(passes):.3f} s per pass "
        f"(min {min(passes):.3f}), {per_example:.3f} s per example; steps "
        f"{[o['steps'] for o in outputs]}"
    )
    nbest = [[h["ids"] for h in o["hypotheses"]] for o in outputs]
    with open(args.output, "w") as f:
        json.dump(nbest, f)
    rust_path = os.path.join(os.path.dirname(args.inputs), "rust_nbest.json")
    if os.path.exists(rust_path):
        with open(rust_path) as f:
            compare_nbest(nbest, json.load(f))


if __name__ == "__main__":
    main()
