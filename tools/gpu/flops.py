"""Model FLOPs of the code2nl Seq2Seq (spec §4) for one training step, counted from the
matrix products of the shapes actually computed (padded lengths), so that the PyTorch loop
and ours are measured by the same yardstick.

Forward FLOPs per example (2 per multiply-add), hidden H, source S, target T:

- encoder, per layer: Q, K, V, O projections ``8·S·H²``; feed-forward ``4·S·H·F``;
  scores and context ``4·S²·H``;
- decoder, per layer: self-attention projections ``8·T·H²`` and ``4·T²·H``; cross-attention
  Q and O ``4·T·H²``, K and V over the memory ``4·S·H²``, scores and context ``4·T·S·H``;
  feed-forward ``4·T·H·F_d``;
- ``dense`` ``2·T·H²`` and the tied LM head ``2·T·H·V``.

A training step is counted as 3× the forward (backward = 2× forward), the usual MFU
convention; embedding look-ups, norms, softmax and the optimizer are not counted.
"""

PRESETS = {
    "codebert": dict(hidden=768, layers=12, ffn=3072, dec_layers=6, dec_ffn=2048, vocab=50265),
    "small": dict(hidden=16, layers=2, ffn=32, dec_layers=2, dec_ffn=32, vocab=50265),
}


def forward_flops(preset, source_len, target_len):
    c = PRESETS[preset]
    h, s, t = c["hidden"], source_len, target_len
    enc = c["layers"] * (8 * s * h * h + 4 * s * h * c["ffn"] + 4 * s * s * h)
    dec = c["dec_layers"] * (
        8 * t * h * h + 4 * t * t * h + 4 * t * h * h + 4 * s * h * h + 4 * t * s * h + 4 * t * h * c["dec_ffn"]
    )
    head = 2 * t * h * h + 2 * t * h * c["vocab"]
    return enc + dec + head


def train_step_flops(preset, batch, source_len, target_len):
    return 3.0 * batch * forward_flops(preset, source_len, target_len)


if __name__ == "__main__":
    f = train_step_flops("codebert", 32, 256, 128)
    print(f"codebert, batch 32, 256/128: {f / 1e12:.2f} TFLOP per training step")
