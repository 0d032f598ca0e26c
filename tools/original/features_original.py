#!/usr/bin/env python3
"""Features of an original code2nl ``run.py``, for comparison with ``prepare --dump-features``.

Reads a jsonl file with the checkout's own ``read_examples`` and
``convert_examples_to_features`` (transformers 2.5.0 ``RobertaTokenizer`` from the given
folder) and writes ``{"idx", "source_ids", "target_ids"}`` per line, unpadded (the ids under
each mask), the format of ``prepare --dump-features``.

    features_original.py --script CodeBERT/code2nl/run.py --tokenizer PRE --data test.jsonl \
        --stage train --out features.jsonl [--max-source-len 256 --max-target-len 128]
"""

import argparse
import json
import os
import sys
import types


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", required=True)
    parser.add_argument("--tokenizer", required=True, help="folder with vocab.json, merges.txt")
    parser.add_argument("--data", required=True)
    parser.add_argument("--stage", required=True, choices=["train", "dev", "test"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--max-source-len", type=int, default=256)
    parser.add_argument("--max-target-len", type=int, default=128)
    args = parser.parse_args()

    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    import run as original_run  # noqa: E402  (main() is guarded)
    from transformers import RobertaTokenizer

    tokenizer = RobertaTokenizer.from_pretrained(args.tokenizer)
    settings = types.SimpleNamespace(max_source_length=args.max_source_len,
                                     max_target_length=args.max_target_len)
    examples = original_run.read_examples(args.data)
    features = original_run.convert_examples_to_features(examples, tokenizer, settings,
                                                         stage=args.stage)
    with open(args.out, "w") as out:
        for feature in features:
            source = [i for i, m in zip(feature.source_ids, feature.source_mask) if m]
            target = [i for i, m in zip(feature.target_ids, feature.target_mask) if m]
            out.write(json.dumps({"idx": feature.example_id, "source_ids": source,
                                  "target_ids": target}) + "\n")


if __name__ == "__main__":
    main()
