#!/usr/bin/env python3
"""Speed of the reference featurization (read_examples + slow-tokenizer BPE +
convert_examples_to_features) on ruby valid, for comparison with `cargo bench --bench data`.

transformers >= 5 has no pure-Python RobertaTokenizer any more, so the slow tokenizer is the
from-spec implementation in tools/reference/tokenize_reference.py (same algorithm: GPT-2
regex with the `regex` module, per-word BPE with a word cache, as transformers 2.5.0).
Each repetition starts with an empty BPE cache, like a fresh run of the reference.

    python3 tools/bench_reference_featurize.py --shared ../shared [--repeat 3]
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
from tokenize_reference import SlowRoberta, normalize  # noqa: E402


def featurize(tok, path, max_source_length=256, max_target_length=128):
    features = []
    with open(path, encoding="utf-8") as f:
        for idx, line in enumerate(f):
            js = json.loads(line.strip())
            source = normalize(js["code_tokens"], " ")
            target = normalize(js["docstring_tokens"], "")
            src = tok.tokenize(source)[: max_source_length - 2]
            src = ["<s>"] + src + ["</s>"]
            src_ids = [tok.encoder[t] for t in src]
            src_mask = [1] * len(src_ids) + [0] * (max_source_length - len(src_ids))
            src_ids += [1] * (max_source_length - len(src_ids))
            tgt = tok.tokenize(target)[: max_target_length - 2]
            tgt = ["<s>"] + tgt + ["</s>"]
            tgt_ids = [tok.encoder[t] for t in tgt]
            tgt_mask = [1] * len(tgt_ids) + [0] * (max_target_length - len(tgt_ids))
            tgt_ids += [1] * (max_target_length - len(tgt_ids))
            features.append((idx, src_ids, src_mask, tgt_ids, tgt_mask))
    return features


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rb = os.path.join(args.shared, "data", "roberta-base")
    path = os.path.join(args.shared, "data", "codesearchnet", "ruby", "valid.jsonl")
    best = best_cpu = None
    for _ in range(args.repeat):
        tok = SlowRoberta(os.path.join(rb, "vocab.json"), os.path.join(rb, "merges.txt"))
        t0, c0 = time.perf_counter(), time.process_time()
        feats = featurize(tok, path)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        best = dt if best is None else min(best, dt)
        best_cpu = dc if best_cpu is None else min(best_cpu, dc)
    n = len(feats)
    # CPU time is reported too: on a shared machine wall time depends on the other load.
    print(f"reference featurize ruby valid: {n} examples, best of {args.repeat}: "
          f"wall {best:.3f} s = {n / best:.0f} examples/s; "
          f"CPU {best_cpu:.3f} s = {n / best_cpu:.0f} examples per CPU-second (1 Python process)")


if __name__ == "__main__":
    main()
