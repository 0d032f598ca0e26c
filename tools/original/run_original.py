#!/usr/bin/env python3
"""Run an original code2nl ``run.py`` (microsoft/CodeBERT or microsoft/CodeXGLUE) on the CPU.

The original scripts are not part of this repository: point ``--script`` at a checkout's
``run.py``. Nothing of them is copied; this wrapper only adjusts the environment they run in,
then executes them unchanged with ``runpy``:

- their ``Beam`` builds ``torch.cuda`` tensors; those names are mapped to CPU tensors;
- their decoder is ``nn.TransformerDecoderLayer(d_model, nhead)`` in a 6-layer
  ``nn.TransformerDecoder``: ``--decoder-layers``/``--decoder-ffn`` change those defaults so a
  small test model (e.g. ``crates/c2n-model/tests/data/small``) fits, and ``--no-dropout`` sets
  the decoder's dropout to 0 (the encoder's comes from the pretrained folder's config.json);
- ``--sequential`` replaces ``RandomSampler`` by ``SequentialSampler``: batches in file order,
  as ``train --no-shuffle`` (torch's shuffle order cannot be reproduced outside torch).

They need transformers 2.5.0 (``AdamW`` and the schedule): ``pip install --no-deps
transformers==2.5.0 sacremoses sentencepiece boto3`` into a virtualenv next to torch.

    run_original.py --script CodeBERT/code2nl/run.py [--sequential] [--no-dropout] \
        [--decoder-layers 2 --decoder-ffn 32] -- --do_test --model_type roberta ...
"""

import argparse
import os
import runpy
import sys

import torch
import torch.nn as nn
import torch.utils.data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", required=True, help="path of the original run.py")
    parser.add_argument("--decoder-layers", type=int, default=6)
    parser.add_argument("--decoder-ffn", type=int, default=2048)
    parser.add_argument("--no-dropout", action="store_true")
    parser.add_argument("--sequential", action="store_true")
    args, rest = parser.parse_known_args()
    if rest and rest[0] == "--":
        rest = rest[1:]

    torch.cuda.LongTensor = torch.LongTensor
    torch.cuda.FloatTensor = torch.FloatTensor

    layer_init = nn.TransformerDecoderLayer.__init__
    dropout = 0.0 if args.no_dropout else 0.1

    def decoder_layer(self, d_model, nhead, dim_feedforward=args.decoder_ffn, dropout=dropout,
                      *more, **named):
        layer_init(self, d_model, nhead, dim_feedforward, dropout, *more, **named)

    nn.TransformerDecoderLayer.__init__ = decoder_layer

    decoder_init = nn.TransformerDecoder.__init__

    def decoder(self, layer, num_layers, *more, **named):
        decoder_init(self, layer, args.decoder_layers, *more, **named)

    nn.TransformerDecoder.__init__ = decoder

    if args.sequential:
        torch.utils.data.RandomSampler = torch.utils.data.SequentialSampler

    script = os.path.abspath(args.script)
    sys.path.insert(0, os.path.dirname(script))
    sys.argv = [script] + rest
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
