#!/usr/bin/env python3
"""The ``--model_name_or_path`` folder an original run.py needs, from a code2nl checkpoint.

run.py builds its encoder with ``RobertaModel.from_pretrained`` before ``--load_model_path``
replaces every weight, so the folder only has to describe the same encoder: this writes the
checkpoint's ``config.json`` (dropout set to 0 with ``--no-dropout``), its ``encoder.*``
weights without the prefix, and the tokenizer's ``vocab.json``/``merges.txt``. With
``--sharpen S`` it also writes ``OUT/sharpened.bin``: the checkpoint with the word embeddings
(and the tied LM head) multiplied by S, whose next-token distributions are peaked like a
trained model's, so beam search meets no near-ties. With ``--eos-scale S DIR`` it also
writes a checkpoint folder ``DIR`` (``config.json`` + ``pytorch_model.bin``, readable by both
sides) whose ``</s>`` row of the word embeddings is multiplied by S: the scales of
``model_fixture.json`` make beams finish early, at several steps or never.
"""

import argparse
import json
import os
import shutil

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="folder with config.json and pytorch_model.bin")
    parser.add_argument("tokenizer", help="folder with vocab.json and merges.txt")
    parser.add_argument("out")
    parser.add_argument("--no-dropout", action="store_true")
    parser.add_argument("--sharpen", type=float)
    parser.add_argument("--eos-scale", nargs=2, metavar=("S", "DIR"))
    args = parser.parse_args()

    os.makedirs(args.out, exist_ok=True)
    state = torch.load(os.path.join(args.checkpoint, "pytorch_model.bin"), map_location="cpu")
    encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    torch.save(encoder, os.path.join(args.out, "pytorch_model.bin"))
    with open(os.path.join(args.checkpoint, "config.json")) as f:
        config = json.load(f)
    if args.no_dropout:
        config["attention_probs_dropout_prob"] = 0.0
        config["hidden_dropout_prob"] = 0.0
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(args.tokenizer, name), args.out)
    if args.eos_scale is not None:
        scale, folder = float(args.eos_scale[0]), args.eos_scale[1]
        os.makedirs(folder, exist_ok=True)
        scaled = dict(state)
        words = scaled["encoder.embeddings.word_embeddings.weight"].clone()
        words[2] *= scale  # </s>
        scaled["encoder.embeddings.word_embeddings.weight"] = words
        scaled["lm_head.weight"] = words
        torch.save(scaled, os.path.join(folder, "pytorch_model.bin"))
        shutil.copy(os.path.join(args.checkpoint, "config.json"), folder)
    if args.sharpen is not None:
        words = "encoder.embeddings.word_embeddings.weight"
        state[words] = state[words] * args.sharpen
        state["lm_head.weight"] = state[words]
        torch.save(state, os.path.join(args.out, "sharpened.bin"))


if __name__ == "__main__":
    main()
