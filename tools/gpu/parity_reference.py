#!/usr/bin/env python3
"""The PyTorch reference on the GPU: recompute the committed parity fixtures on ``--device``,
compare them with the committed (CPU) ones, and write the GPU versions for the Rust side.

Reuses the spec-written reference unchanged (``tools/reference``): ``c2n_reference`` for the
model, ``beam.beam_search`` for the n-best (the model's log-probabilities are computed on the
device, the beam bookkeeping stays on the CPU as when the fixtures were made), and
``train_reference.reference_loop_a`` for the three training updates (its batches are moved to
the device by wrapping ``train_reference.pad_batch``).

    python3 tools/gpu/parity_reference.py --device cuda --out /tmp/c2n-gpu/torch-cuda

Writes under ``--out``:

- ``model_fixture.json``: same layout as ``crates/c2n-model/tests/data/model_fixture.json``
  (same examples and ``slice_ids``; encoder output, logits, loss and the n-best runs from the
  device), for ``device parity-model --fixture``;
- ``train_steps/expected.json`` and ``expected_<case>.safetensors`` (variant-A ``ga1``, ``ga2``,
  variant-B ``b_ga2``): same layout as
  ``crates/c2n-train/tests/data/train_steps``, for ``device parity-train --fixture-dir``.

Prints JSON lines ``{"check": "parity_model_torch" | "parity_train_torch", ...}`` with the
largest differences from the committed fixtures.
"""

import argparse
import copy
import json
import os

import torch

from common import ROOT, device, emit, import_reference

import_reference()

from beam import beam_search  # noqa: E402
from c2n_reference.checkpoint import load_checkpoint  # noqa: E402
import train_reference as tr  # noqa: E402

MODEL_DATA = os.path.join(ROOT, "crates", "c2n-model", "tests", "data")
TRAIN_DATA = os.path.join(ROOT, "crates", "c2n-train", "tests", "data", "train_steps")


def max_rel_diff(a, b):
    a = torch.as_tensor(a, dtype=torch.float64).reshape(-1)
    b = torch.as_tensor(b, dtype=torch.float64).reshape(-1)
    if a.numel() != b.numel():
        return float("inf")
    return float(((a - b).abs() / b.abs().clamp(min=1.0)).max()) if a.numel() else 0.0


def flat(t):
    return [float(x) for x in t.detach().cpu().reshape(-1).tolist()]


def model_parity(dev, out_dir, tol):
    with open(os.path.join(MODEL_DATA, "model_fixture.json")) as f:
        committed = json.load(f)
    model = load_checkpoint(os.path.join(MODEL_DATA, "small"), strict=False).to(dev).eval()
    rows = committed["examples"]

    def column(key):
        return torch.tensor([r[key] for r in rows], device=dev)

    src, src_mask, tgt, tgt_mask = (column(k) for k in ("source_ids", "source_mask", "target_ids", "target_mask"))
    slice_ids = committed["slice_ids"]
    with torch.no_grad():
        enc = model.encode(src, src_mask)
        logits = model.logits(src, src_mask, tgt)
        loss, loss_sum, n_active = model(src, src_mask, tgt, tgt_mask)
    fixture = {k: committed[k] for k in ("hidden_size", "source_len", "target_len", "examples", "slice_ids")}
    fixture.update({
        "regenerate": "python3 tools/gpu/parity_reference.py --device cuda --out DIR",
        "torch_version": torch.__version__,
        "device": str(dev),
        "encoder_output": flat(enc),
        "logits_slice": flat(logits[:, :, slice_ids]),
        "logits_logsumexp": flat(torch.logsumexp(logits, dim=-1)),
        "logits_argmax": [int(x) for x in logits.argmax(-1).reshape(-1).tolist()],
        "loss": float(loss),
        "loss_sum": float(loss_sum),
        "n_active": int(n_active),
    })
    # Gradients of the eval-mode loss, as make_model_fixtures.py stores them, for
    # `device parity-model`'s gradient comparison.
    model.zero_grad()
    model(src, src_mask, tgt, tgt_mask)[0].backward()
    fixture["grad_stats"] = {
        name: None if p.grad is None else [float(p.grad.double().sum()), float((p.grad.double() ** 2).sum())]
        for name, p in model.named_parameters()
    }
    model.zero_grad()

    beam_size, max_length = committed["nbest"]["beam_size"], committed["nbest"]["max_length"]
    word = model.encoder.embeddings.word_embeddings.weight
    original = word[2].detach().clone()
    runs, cases, ids_same, worst_score = [], 0, 0, 0.0
    for committed_run in committed["nbest"]["runs"]:
        scale = committed_run["eos_row_scale"]
        with torch.no_grad():
            word[2] = original * scale
        results = []
        for i, want in enumerate(committed_run["results"]):
            s, m = src[i:i + 1], src_mask[i:i + 1]
            with torch.no_grad():
                ctx = model.encode(s, m).repeat(beam_size, 1, 1)
                ctx_mask = m.repeat(beam_size, 1)
                out = beam_search(
                    lambda ids: model.next_token_log_probs(ids.to(dev), ctx, ctx_mask).cpu(),
                    beam_size, max_length,
                )
            results.append(out)
            cases += 1
            same = [h["ids"] for h in out["hypotheses"]] == [h["ids"] for h in want["hypotheses"]]
            ids_same += int(same)
            for (a, _, _), (b, _, _) in zip(out["final"], want["final"]):
                worst_score = max(worst_score, abs(a - b) / max(abs(b), 1e-30))
        runs.append({"eos_row_scale": scale, "results": results})
    with torch.no_grad():
        word[2] = original
    fixture["nbest"] = {"beam_size": beam_size, "max_length": max_length, "runs": runs}
    with open(os.path.join(out_dir, "model_fixture.json"), "w") as f:
        json.dump(fixture, f)

    diffs = {
        "encoder_max_rel_diff": max_rel_diff(fixture["encoder_output"], committed["encoder_output"]),
        "logits_slice_max_rel_diff": max_rel_diff(fixture["logits_slice"], committed["logits_slice"]),
        "logsumexp_max_rel_diff": max_rel_diff(fixture["logits_logsumexp"], committed["logits_logsumexp"]),
        "loss_rel_diff": max_rel_diff([fixture["loss"]], [committed["loss"]]),
        "grad_sumsq_max_rel_diff": max(
            (abs(g[1] - w[1]) / max(abs(w[1]), 1e-20)
             for name, g in fixture["grad_stats"].items()
             if g is not None and (w := committed["grad_stats"].get(name)) is not None and abs(w[1]) > 1e-20),
            default=0.0,
        ),
    }
    argmax_mismatches = sum(a != b for a, b in zip(fixture["logits_argmax"], committed["logits_argmax"]))
    ok = (all(v <= tol for v in diffs.values()) and argmax_mismatches == 0
          and fixture["n_active"] == committed["n_active"] and ids_same == cases and worst_score <= 1e-4)
    emit("parity_model_torch", reference="committed torch-cpu fixture", device=str(dev), torch=torch.__version__,
         tol=tol, **diffs, argmax_mismatches=argmax_mismatches,
         n_active_equal=fixture["n_active"] == committed["n_active"], beam_cases=cases,
         beam_ids_identical=ids_same, beam_max_score_rel_diff=worst_score, ok=ok)


def exact_gradient_is_zero(key, n):
    """Which entries of the snapshot `key` (``update<i>.<name>``) have an exact gradient of
    zero: a key bias (softmax is invariant to it), all of a RoBERTa one or the middle third of
    a decoder layer's packed ``in_proj_bias`` (c2n_train::comm::parity::exact_gradient_is_zero)."""
    mask = torch.zeros(n, dtype=torch.bool)
    if key.endswith("attention.self.key.bias"):
        mask[:] = True
    elif key.endswith("in_proj_bias"):
        mask[n // 3:2 * (n // 3)] = True
    return mask


def train_parity(dev, out_dir):
    from safetensors.torch import load_file, save_file

    with open(os.path.join(TRAIN_DATA, "expected.json")) as f:
        committed = json.load(f)
    cpu_pad_batch = tr.pad_batch
    tr.pad_batch = lambda feats: tuple(t.to(dev) for t in cpu_pad_batch(feats))
    os.makedirs(out_dir, exist_ok=True)
    result = copy.deepcopy(committed)
    result["regenerate"] = "python3 tools/gpu/parity_reference.py --device cuda --out DIR"
    result["device"] = str(dev)
    try:
        for case, spec in committed["cases"].items():
            model = load_checkpoint(os.path.join(TRAIN_DATA, "init"), strict=False).to(dev)
            model.eval()  # dropout off, as the committed fixture
            model.zero_grad(set_to_none=True)
            micro_batch = spec["batch_size"] // spec["grad_accum"]
            if "epochs" in spec:  # variant B (§7.5)
                losses, lrs, snapshots, extra = tr.reference_loop_b(
                    model, committed["features"], micro_batch, spec["grad_accum"], spec["epochs"])
            else:  # variant A (§7.4)
                losses, lrs, snapshots, extra = tr.reference_loop_a(
                    model, committed["features"], micro_batch, spec["grad_accum"], spec["train_steps"])
            snapshots = {k: v.detach().cpu().contiguous() for k, v in snapshots.items()}
            save_file(snapshots, os.path.join(out_dir, f"expected_{case}.safetensors"))
            result["cases"][case].update({"losses": losses, "lrs": lrs, **extra})
            want = load_file(os.path.join(TRAIN_DATA, f"expected_{case}.safetensors"))
            worst_abs, worst_rel, worst_key, zero_abs = 0.0, 0.0, None, 0.0
            for key, value in snapshots.items():
                d = (value.double() - want[key].double()).abs().flatten()
                zero = exact_gradient_is_zero(key, d.numel())
                if zero.any():
                    zero_abs = max(zero_abs, float(d[zero].max()))
                    d, w = d[~zero], want[key].double().flatten()[~zero]
                else:
                    w = want[key].double().flatten()
                if d.numel() == 0:
                    continue
                if float(d.max()) > worst_abs:
                    worst_abs, worst_key = float(d.max()), key
                worst_rel = max(worst_rel, float((d / w.abs().clamp(min=1e-6)).max()))
            loss_diff = max(abs(a - b) / abs(b) for a, b in zip(losses, spec["losses"]))
            # Entries whose exact gradient is zero (the attention key biases) hold round-off
            # gradients that Adam amplifies to about lr per update on either device: printed
            # apart, not in ok, as the device binary's parity-train does.
            emit("parity_train_torch", reference="committed torch-cpu fixture", case=case, device=str(dev),
                 updates=len(lrs), lrs_equal=lrs == spec["lrs"], loss_max_rel_diff=loss_diff,
                 param_max_abs_diff=worst_abs, param_max_rel_diff=worst_rel, param_worst=worst_key,
                 zero_grad_max_abs_diff=zero_abs,
                 ok=lrs == spec["lrs"] and loss_diff <= 1e-5 and worst_abs <= 1e-4)
    finally:
        tr.pad_batch = cpu_pad_batch
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(result, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    dev = device(args.device)
    if dev.type == "cuda":
        # The reference is plain f32: no TF32 in matmuls or convolutions.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    model_parity(dev, args.out, args.tol)
    train_parity(dev, os.path.join(args.out, "train_steps"))


if __name__ == "__main__":
    main()
