#!/usr/bin/env python3
"""All K beam rows of an original code2nl model, for comparison with ``evaluate --nbest K``.

run.py keeps only row 0 of its ``Seq2Seq`` output (``test_0.output``); this script builds the
original ``Seq2Seq`` and features the way run.py does (imported from the checkout's
``model.py``/``run.py``, environment adjusted as in ``run_original.py``) and writes every row
of every example as JSON lines ``{"idx", "rows": [[ids...], ...]}``, each row cut at its first
id 0 (the padding; also what ``evaluate`` does to its hypotheses).

    nbest_original.py --script CodeBERT/code2nl/run.py --pretrained PRE --checkpoint BIN \
        --data test.jsonl --out nbest_original.jsonl [--beam-size 10 --max-source-len 64 \
        --max-target-len 32 --batch-size 16 --decoder-layers 2 --decoder-ffn 32]
"""

import argparse
import json
import os
import sys
import types

import torch
import torch.nn as nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", required=True)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--beam-size", type=int, default=10)
    parser.add_argument("--max-source-len", type=int, default=64)
    parser.add_argument("--max-target-len", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--decoder-layers", type=int, default=6)
    parser.add_argument("--decoder-ffn", type=int, default=2048)
    args = parser.parse_args()

    torch.cuda.LongTensor = torch.LongTensor
    torch.cuda.FloatTensor = torch.FloatTensor
    sys.path.insert(0, os.path.dirname(os.path.abspath(args.script)))
    import model as original_model  # noqa: E402  (the checkout's model.py)
    import run as original_run  # noqa: E402  (main() is guarded)
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    config = RobertaConfig.from_pretrained(args.pretrained)
    tokenizer = RobertaTokenizer.from_pretrained(args.pretrained)
    encoder = RobertaModel.from_pretrained(args.pretrained, config=config)
    layer = nn.TransformerDecoderLayer(d_model=config.hidden_size,
                                       nhead=config.num_attention_heads,
                                       dim_feedforward=args.decoder_ffn, dropout=0.0)
    decoder = nn.TransformerDecoder(layer, num_layers=args.decoder_layers)
    model = original_model.Seq2Seq(encoder=encoder, decoder=decoder, config=config,
                                   beam_size=args.beam_size, max_length=args.max_target_len,
                                   sos_id=tokenizer.cls_token_id, eos_id=tokenizer.sep_token_id)
    model.load_state_dict(torch.load(args.checkpoint, map_location="cpu"))
    model.eval()

    settings = types.SimpleNamespace(max_source_length=args.max_source_len,
                                     max_target_length=args.max_target_len)
    examples = original_run.read_examples(args.data)
    features = original_run.convert_examples_to_features(examples, tokenizer, settings,
                                                         stage="test")
    with open(args.out, "w") as out:
        for start in range(0, len(features), args.batch_size):
            batch = features[start:start + args.batch_size]
            source_ids = torch.tensor([f.source_ids for f in batch], dtype=torch.long)
            source_mask = torch.tensor([f.source_mask for f in batch], dtype=torch.long)
            with torch.no_grad():
                preds = model(source_ids=source_ids, source_mask=source_mask)
            for feature, rows in zip(batch, preds):
                cut = []
                for row in rows.tolist():
                    cut.append(row[:row.index(0)] if 0 in row else row)
                out.write(json.dumps({"idx": feature.example_id, "rows": cut}) + "\n")


if __name__ == "__main__":
    main()
