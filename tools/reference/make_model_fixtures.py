#!/usr/bin/env python3
"""Parity fixtures for crates/c2n-model, from the spec-written PyTorch reference.

Builds the small random model of ``ModelConfig.small()`` (REAL vocabulary 50265, hidden 16,
2 heads, 2 encoder + 2 decoder layers, ffn 32, 514 positions), saves it as

* ``small/pytorch_model.bin``  - torch.save(state_dict) as run.py does: zip format, 311-style
  keys (here 79), ``bias`` buffer included, ``lm_head.weight`` sharing storage with the word
  embeddings;
* ``small/model.safetensors``  - the same weights without ``bias`` and ``lm_head.weight``
  (what an aliasing-free exporter writes; loaders rebuild/re-tie them);
* ``small/config.json``;

writes ``legacy/`` (a tiny model in torch's pre-1.6 ``torch.save`` format + the same weights
as safetensors), and writes ``model_fixture.json`` with inputs and expected outputs for a few real ruby
examples (ids precomputed here with the ``tokenizers`` package and tokenizer.json; source
length 64, target length 32), plus a synthetic target row with a ``<pad>`` in the middle:

* ``encoder_output``                   [n, 64, 16] eval-mode last hidden state (flattened);
* ``logits_slice``                     [n, 32, len(slice_ids)] teacher-forced logits at
                                       ``slice_ids`` (full logits would be 4.8M floats);
* ``logits_logsumexp`` / ``logits_argmax`` [n, 32] over the full vocabulary;
* ``loss``, ``loss_sum``, ``n_active``  the §5 triple for the whole batch;
* ``grad_stats``                      per parameter, [sum, sum of squares] of the gradient of
                                       the eval-mode loss, ``None`` for the pooler;
* ``grad_exact``                      three small gradients in full;
* ``grad_pad_rows``                   row 1 (padding_idx) of the word and position table
                                       gradients: LM-head-only and zero;
* ``nbest``: per ``eos_row_scale`` (the ``</s>`` row of the word embeddings multiplied by it,
  which makes EOS likely and exercises the finished-hypothesis paths), the beam_search output
  of tools/reference/beam.py for every example (beam 10, max length 16).

Regenerate (from the workspace root, with ../shared present):

    python3 tools/reference/make_model_fixtures.py \
        --shared ../shared --out crates/c2n-model/tests/data
"""

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from c2n_reference import ModelConfig, Seq2Seq, save_pytorch_bin, save_safetensors  # noqa: E402
from c2n_reference.checkpoint import load_checkpoint  # noqa: E402

SEED = 20240611
EXAMPLE_LINES = [0, 7, 11, 20]  # long/short sources, targets of 7, 15, 3 and 37 tokens
SOURCE_LEN = 64
TARGET_LEN = 32
BEAM_SIZE = 10
MAX_LENGTH = 16
EOS_ROW_SCALES = [1.0, 2.2, 2.4, 2.6, 6.0, 12.0]  # none / some / eos_top-but-<K / done / >K in a step / EOS at step 1


def normalize(tokens, newline_repl):
    """§1.5: join with spaces, replace '\\n', collapse whitespace runs (Python isspace)."""
    text = " ".join(tokens).replace("\n", newline_repl)
    return " ".join(text.split())


def features(tokenizer, text, max_len):
    """§3: truncate BPE to max-2, wrap in <s> ... </s>, pad with 1 / mask 0."""
    ids = tokenizer.encode(text, add_special_tokens=False).ids[: max_len - 2]
    ids = [0] + ids + [2]
    mask = [1] * len(ids)
    pad = max_len - len(ids)
    return ids + [1] * pad, mask + [0] * pad


def load_examples(shared):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(shared, "data/roberta-base/tokenizer.json"))
    path = os.path.join(shared, "data/codesearchnet/ruby/test.jsonl")
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    rows = []
    for i in EXAMPLE_LINES:
        record = json.loads(lines[i].strip())
        src = normalize(record["code_tokens"], " ")
        tgt = normalize(record["docstring_tokens"], "")
        s_ids, s_mask = features(tokenizer, src, SOURCE_LEN)
        t_ids, t_mask = features(tokenizer, tgt, TARGET_LEN)
        rows.append({"line": i, "source_ids": s_ids, "source_mask": s_mask,
                     "target_ids": t_ids, "target_mask": t_mask})
    # Synthetic row: example 11's source, a target with a <pad> (id 1) in the middle that is
    # NOT masked, so the padding-aware positions (§4.2, §6.8) are exercised on the decoder side.
    base = rows[2]
    real = [t for t, m in zip(base["target_ids"], base["target_mask"]) if m]
    t_ids = real[:2] + [1] + real[2:]
    t_mask = [1] * len(t_ids)
    rows.append({"line": -1, "source_ids": base["source_ids"], "source_mask": base["source_mask"],
                 "target_ids": t_ids + [1] * (TARGET_LEN - len(t_ids)),
                 "target_mask": t_mask + [0] * (TARGET_LEN - len(t_mask))})
    return rows


def check_against_transformers(model, src, mask):
    """Independent check of our spec-written encoder against transformers' RobertaModel."""
    try:
        from transformers import RobertaConfig, RobertaModel
    except ImportError:
        print("transformers not available: skipping the RobertaModel cross-check")
        return
    c = model.cfg
    hf_cfg = RobertaConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
        num_attention_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
        max_position_embeddings=c.max_position_embeddings, type_vocab_size=c.type_vocab_size,
        layer_norm_eps=c.layer_norm_eps, pad_token_id=c.pad_token_id,
    )
    hf_cfg._attn_implementation = "eager"
    hf = RobertaModel(hf_cfg).eval()
    enc = {k[len("encoder."):]: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    missing, unexpected = hf.load_state_dict(enc, strict=False)
    assert not [k for k in missing if "position_ids" not in k], missing
    assert not unexpected, unexpected
    with torch.no_grad():
        ours = model.encode(src, mask)
        theirs = hf(input_ids=src, attention_mask=mask).last_hidden_state
    diff = (ours - theirs).abs().max().item()
    print(f"encoder vs transformers.RobertaModel: max abs diff {diff:.3g}")
    assert diff < 1e-5, diff


def write_legacy_fixture(out_dir):
    """A tiny model saved in torch's legacy (pre-1.6) format, as torch 1.4 writes run.py
    checkpoints, plus the same weights as safetensors; ``bias`` is left out (tolerated) to keep
    the file small, ``lm_head.weight`` shares storage with the word embeddings."""
    cfg = ModelConfig(vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=16, max_position_embeddings=40, decoder_layers=1,
                      decoder_ffn_dim=16)
    model = Seq2Seq(cfg)
    model.randomize(torch.Generator().manual_seed(SEED + 1))
    os.makedirs(out_dir, exist_ok=True)
    cfg.save_json(os.path.join(out_dir, "config.json"))
    state = {k: v for k, v in model.state_dict().items() if k != "bias"}
    torch.save(state, os.path.join(out_dir, "pytorch_model.bin"), _use_new_zipfile_serialization=False)
    save_safetensors(model, os.path.join(out_dir, "model.safetensors"))


def flat(t):
    return [float(x) for x in t.reshape(-1).tolist()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(HERE, "../../../shared"))
    ap.add_argument("--out", default=os.path.join(HERE, "../../crates/c2n-model/tests/data"))
    args = ap.parse_args()

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    cfg = ModelConfig.small()
    model = Seq2Seq(cfg)
    model.randomize(gen)
    model.eval()

    out_small = os.path.join(args.out, "small")
    os.makedirs(out_small, exist_ok=True)
    cfg.save_json(os.path.join(out_small, "config.json"))
    save_pytorch_bin(model, os.path.join(out_small, "pytorch_model.bin"))
    save_safetensors(model, os.path.join(out_small, "model.safetensors"))
    # The files must reload (strictly for .bin) to the same model.
    reloaded = load_checkpoint(out_small, strict=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, reloaded.state_dict()[k]), k

    write_legacy_fixture(os.path.join(args.out, "legacy"))

    rows = load_examples(args.shared)
    src = torch.tensor([r["source_ids"] for r in rows])
    src_mask = torch.tensor([r["source_mask"] for r in rows])
    tgt = torch.tensor([r["target_ids"] for r in rows])
    tgt_mask = torch.tensor([r["target_mask"] for r in rows])
    check_against_transformers(model, src, src_mask)

    with torch.no_grad():
        enc = model.encode(src, src_mask)
        logits = model.logits(src, src_mask, tgt)
        loss, loss_sum, n_active = model(src, src_mask, tgt, tgt_mask)
    gold = sorted({int(t) for t in tgt.reshape(-1).tolist()})
    slice_ids = sorted(set([0, 1, 2, 3, 4, 50264] + gold[:24] + list(range(1000, 50000, 4000))))
    fixture = {
        "regenerate": "python3 tools/reference/make_model_fixtures.py --shared ../shared --out crates/c2n-model/tests/data",
        "torch_version": torch.__version__,
        "hidden_size": cfg.hidden_size,
        "source_len": SOURCE_LEN,
        "target_len": TARGET_LEN,
        "examples": rows,
        "encoder_output": flat(enc),
        "slice_ids": slice_ids,
        "logits_slice": flat(logits[:, :, slice_ids]),
        "logits_logsumexp": flat(torch.logsumexp(logits, dim=-1)),
        "logits_argmax": [int(x) for x in logits.argmax(-1).reshape(-1).tolist()],
        "loss": float(loss),
        "loss_sum": float(loss_sum),
        "n_active": int(n_active),
    }

    # Gradients of the eval-mode loss (dropout off). nn.Embedding(padding_idx=1): the lookups
    # give row 1 no gradient, so row 1 of the word table holds only the LM head's gradient
    # and row 1 of the position table is zero (§4.5); ``pad_rows`` stores both in full.
    model.zero_grad()
    grad_loss, _, _ = model(src, src_mask, tgt, tgt_mask)
    grad_loss.backward()
    grad_stats = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            grad_stats[name] = None
            continue
        g = p.grad.detach().double()
        grad_stats[name] = [float(g.sum()), float((g * g).sum())]
    fixture["grad_stats"] = grad_stats
    fixture["grad_exact"] = {
        name: flat(dict(model.named_parameters())[name].grad)
        for name in ["dense.bias", "decoder.layers.1.norm3.weight", "encoder.embeddings.LayerNorm.bias"]
    }
    fixture["grad_pad_rows"] = {
        "encoder.embeddings.word_embeddings.weight": flat(model.encoder.embeddings.word_embeddings.weight.grad[1]),
        "encoder.embeddings.position_embeddings.weight": flat(model.encoder.embeddings.position_embeddings.weight.grad[1]),
    }
    model.zero_grad()

    from beam import beam_search

    nbest = []
    word = model.encoder.embeddings.word_embeddings.weight
    original_eos_row = word[2].detach().clone()
    for scale in EOS_ROW_SCALES:
        with torch.no_grad():
            word[2] = original_eos_row * scale
        per_example = []
        with torch.no_grad():
            for i in range(len(EXAMPLE_LINES)):
                s, m = src[i:i + 1], src_mask[i:i + 1]
                memory = model.encode(s, m)
                ctx = memory.repeat(BEAM_SIZE, 1, 1)
                ctx_mask = m.repeat(BEAM_SIZE, 1)
                result = beam_search(
                    lambda ids: model.next_token_log_probs(ids, ctx, ctx_mask), BEAM_SIZE, MAX_LENGTH
                )
                per_example.append(result)
        nbest.append({"eos_row_scale": scale, "results": per_example})
        summary = [(r["steps"], r["stopped_by_done"], len(r["finished"])) for r in per_example]
        print(f"eos scale {scale}: (steps, stopped_by_done, finished) = {summary}")
    with torch.no_grad():
        word[2] = original_eos_row
    fixture["nbest"] = {"beam_size": BEAM_SIZE, "max_length": MAX_LENGTH, "runs": nbest}

    with open(os.path.join(args.out, "model_fixture.json"), "w") as f:
        json.dump(fixture, f)
        f.write("\n")
    print(f"wrote {args.out}/model_fixture.json, loss {float(loss):.6f}, n_active {int(n_active)}")


if __name__ == "__main__":
    main()
