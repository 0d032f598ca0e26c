#!/usr/bin/env python3
"""Compare our `evaluate` and `train` with the original code2nl scripts, end to end, on the CPU.

The original ``run.py`` files are not in this repository; pass the paths of a
microsoft/CodeBERT checkout (``CodeBERT/code2nl/run.py``, variant A) and a
microsoft/CodeXGLUE checkout (``Code-Text/code-to-text/code/run.py``, variant B). They run
unchanged through ``run_original.py`` (CPU tensors for their ``Beam``, the small test
model's decoder shape, dropout off, batches in file order), with transformers 2.5.0 in the
Python given by ``--python``. Both sides start from the same weights
(``crates/c2n-model/tests/data/small``), read the same ruby lines and write their usual
files; this script compares them and prints a Markdown table (exit status 1 if a judged check
differs; the decoding counts are reported, not judged, since float rounding decides the
near-ties of a random model):

- features: ``convert_examples_to_features`` (transformers 2.5.0's slow tokenizer) against
  ``prepare --dump-features``, every ruby valid and test example, train and test stage;
- BLEU: the checkout's ``bleu.py`` against our ``bleu``, printed values, on ruby test
  docstrings as predictions (identical, words dropped or shuffled, upper case, empty);
- decoding: ``test_0.output`` against our ``test.output`` (row 0 of every beam) and all K
  rows of every beam (``nbest_original.py``) against our ``nbest.jsonl``, with the random
  model and with its ``</s>`` row scaled so that beams finish at various steps;
- training: every dev evaluation (perplexity, BLEU rounded as run.py logs it), the weights
  of each checkpoint both sides wrote, and ``dev.output``/``dev.gold``.

    python3 tools/original/compare.py --python /tmp/orig/bin/python \
        --codebert CodeBERT/CodeBERT/code2nl/run.py \
        --codexglue CodeXGLUE/Code-Text/code-to-text/code/run.py --shared ../shared

Build the examples first (``cargo build --release --examples``).
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SMALL = os.path.join(ROOT, "crates/c2n-model/tests/data/small")
SMALL_SHAPE = ["--decoder-layers", "2", "--decoder-ffn", "32"]

# name, variant, original flags, our flags (both: dropout off, file order; ours also with
# run.py's accumulation rule, `--accumulation reference`, which matters from GA 2 on)
TRAINING_CASES = [
    ("A, GA 1, one batch per update", "A",
     "--train_batch_size 16 --eval_batch_size 8 --learning_rate 1e-3 --train_steps 6 "
     "--eval_steps 3 --warmup_steps 2 --weight_decay 0.01",
     "--batch-size 16 --eval-batch-size 8 --lr 1e-3 --train-steps 6 --eval-steps 3 "
     "--warmup-steps 2 --weight-decay 0.01"),
    ("A, GA 2, 14 batches, eval every 4", "A",
     "--train_batch_size 8 --gradient_accumulation_steps 2 --eval_batch_size 5 "
     "--learning_rate 1e-3 --train_steps 14 --eval_steps 4 --warmup_steps 2 --weight_decay 0.01",
     "--batch-size 8 --grad-accum 2 --eval-batch-size 5 --lr 1e-3 --train-steps 14 "
     "--eval-steps 4 --warmup-steps 2 --weight-decay 0.01"),
    # run.py starts with eval_flag = True: with --eval_steps -1 (every update) and GA 3 the
    # untrained model is evaluated after the first batch, which resets the GA phase.
    ("A, GA 3, evaluation at every update (eval_steps -1)", "A",
     "--train_batch_size 6 --gradient_accumulation_steps 3 --eval_batch_size 8 "
     "--learning_rate 1e-3 --train_steps 10 --eval_steps -1 --warmup_steps 2",
     "--batch-size 6 --grad-accum 3 --eval-batch-size 8 --lr 1e-3 --train-steps 10 "
     "--eval-steps 1 --warmup-steps 2"),
    ("B, GA 1, 4 batches per epoch, 3 epochs", "B",
     "--train_batch_size 4 --eval_batch_size 3 --learning_rate 1e-3 --num_train_epochs 3 "
     "--weight_decay 0.01",
     "--batch-size 4 --eval-batch-size 3 --lr 1e-3 --epochs 3 --weight-decay 0.01"),
    ("B, GA 2, 3 updates per epoch, 3 epochs", "B",
     "--train_batch_size 6 --gradient_accumulation_steps 2 --eval_batch_size 8 "
     "--learning_rate 1e-3 --num_train_epochs 3",
     "--batch-size 6 --grad-accum 2 --eval-batch-size 8 --lr 1e-3 --epochs 3"),
    ("B, one batch per epoch, 12 epochs", "B",
     "--train_batch_size 16 --eval_batch_size 8 --learning_rate 1e-3 --num_train_epochs 12 "
     "--weight_decay 0.01",
     "--batch-size 16 --eval-batch-size 8 --lr 1e-3 --epochs 12 --weight-decay 0.01"),
    # Edge settings probed by the second audit (2026-11-27); a fifth element sets the
    # source/target lengths (default 64/32).
    ("X1 A, GA 3 with batch 8, warmup 50 longer than the run, eval every 2, seed 7", "A",
     "--train_batch_size 8 --gradient_accumulation_steps 3 --eval_batch_size 3 "
     "--learning_rate 1e-3 --train_steps 11 --eval_steps 2 --warmup_steps 50 --seed 7",
     "--batch-size 8 --grad-accum 3 --eval-batch-size 3 --lr 1e-3 --train-steps 11 "
     "--eval-steps 2 --warmup-steps 50 --seed 7"),
    ("X2 A, train_steps 3 below GA 4, eval every update", "A",
     "--train_batch_size 8 --gradient_accumulation_steps 4 --eval_batch_size 8 "
     "--learning_rate 1e-3 --train_steps 3 --eval_steps -1",
     "--batch-size 8 --grad-accum 4 --eval-batch-size 8 --lr 1e-3 --train-steps 3 "
     "--eval-steps -1"),
    ("X3 A, GA 2, one batch per pass, eval_steps 3 not dividing 9, beam 1", "A",
     "--train_batch_size 32 --gradient_accumulation_steps 2 --eval_batch_size 5 "
     "--learning_rate 1e-3 --train_steps 9 --eval_steps 3 --beam_size 1",
     "--batch-size 32 --grad-accum 2 --eval-batch-size 5 --lr 1e-3 --train-steps 9 "
     "--eval-steps 3 --beam-size 1"),
    ("X4 B, GA 3, 4 batches per epoch (gradients carried over), weight decay 0.1", "B",
     "--train_batch_size 12 --gradient_accumulation_steps 3 --eval_batch_size 8 "
     "--learning_rate 1e-3 --num_train_epochs 3 --weight_decay 0.1",
     "--batch-size 12 --grad-accum 3 --eval-batch-size 8 --lr 1e-3 --epochs 3 "
     "--weight-decay 0.1"),
    ("X5 B, target length 4, beam 2, 2 epochs", "B",
     "--train_batch_size 5 --eval_batch_size 2 --learning_rate 1e-2 --num_train_epochs 2 "
     "--beam_size 2",
     "--batch-size 5 --eval-batch-size 2 --lr 1e-2 --epochs 2 --beam-size 2", ("64", "4")),
    ("X6 A, adam epsilon 1e-3", "A",
     "--train_batch_size 8 --eval_batch_size 8 --learning_rate 1e-2 --train_steps 6 "
     "--eval_steps 3 --adam_epsilon 1e-3",
     "--batch-size 8 --eval-batch-size 8 --lr 1e-2 --train-steps 6 --eval-steps 3 "
     "--adam-eps 1e-3"),
    ("X7 B, GA 2, 3 batches per epoch: updates past t_total, 4 epochs", "B",
     "--train_batch_size 12 --gradient_accumulation_steps 2 --eval_batch_size 8 "
     "--learning_rate 1e-2 --num_train_epochs 4",
     "--batch-size 12 --grad-accum 2 --eval-batch-size 8 --lr 1e-2 --epochs 4"),
    ("X8 B, README lengths 256/128, GA 2, 2 epochs", "B",
     "--train_batch_size 8 --gradient_accumulation_steps 2 --eval_batch_size 8 "
     "--learning_rate 1e-2 --num_train_epochs 2",
     "--batch-size 8 --grad-accum 2 --eval-batch-size 8 --lr 1e-2 --epochs 2", ("256", "128")),
    # lr 1e-3: at 1e-2 Adam turns float noise in a near-zero gradient row into 2e-5.
    ("X9 A, source 16 / target 8 (both truncated), eval every 2", "A",
     "--train_batch_size 4 --eval_batch_size 3 --learning_rate 1e-3 --train_steps 6 "
     "--eval_steps 2 --warmup_steps 1",
     "--batch-size 4 --eval-batch-size 3 --lr 1e-3 --train-steps 6 --eval-steps 2 "
     "--warmup-steps 1", ("16", "8")),
]


def run(cmd, log=None):
    with open(log, "w") if log else open(os.devnull, "w") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = open(log).read()[-3000:] if log else ""
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{tail}")


def lines(path, first, count):
    with open(path, encoding="utf-8") as f:
        return f.readlines()[first:first + count]


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(rows)


def max_weight_diff(original_bin, ours_safetensors):
    import torch
    from safetensors.torch import load_file
    a = torch.load(original_bin, map_location="cpu")
    b = load_file(ours_safetensors)
    return max((a[k].float() - b[k].float()).abs().max().item() for k in b)


def compare_features(args, work, pre):
    """Every ruby valid and test example, train and test stage, at 256/128."""
    results = []
    for split in ("valid", "test"):
        data = os.path.join(os.path.dirname(args.test_data), f"{split}.jsonl")
        for stage in ("train", "test"):
            theirs = os.path.join(work, f"features_{split}_{stage}_original.jsonl")
            mine = os.path.join(work, f"features_{split}_{stage}_ours.jsonl")
            run([args.python, os.path.join(HERE, "features_original.py"), "--script",
                 args.codebert, "--tokenizer", pre, "--data", data, "--stage", stage,
                 "--out", theirs])
            run([os.path.join(args.examples, "prepare"), "--data", data, "--tokenizer",
                 args.tokenizer, "--stage", stage, "--cache-dir",
                 os.path.join(work, "cache"), "--dump-features", mine])
            with open(theirs) as a, open(mine) as b:
                pairs = [(json.loads(x), json.loads(y)) for x, y in zip(a, b)]
                count = (sum(1 for _ in open(theirs)), sum(1 for _ in open(mine)))
            same = sum(str(x["idx"]) == str(y["idx"]) and x["source_ids"] == y["source_ids"]
                       and x["target_ids"] == y["target_ids"] for x, y in pairs)
            results.append((f"features: ruby {split}, {stage} stage, 256/128",
                            f"{same} / {count[0]} identical",
                            same == count[0] == count[1]))
    return results


def compare_bleu(args, work):
    """The original bleu.py script against our `bleu`, on ruby test docstrings made worse."""
    import random
    rng = random.Random(3)
    gold = []
    with open(args.test_data, encoding="utf-8") as f:
        for idx, line in enumerate(f):
            text = " ".join(json.loads(line)["docstring_tokens"]).replace("\n", "")
            gold.append((idx, " ".join(text.strip().split())))
    gold_path = os.path.join(work, "bleu_gold.txt")
    write(gold_path, [f"{i}\t{t}\n" for i, t in gold])

    def shuffled(words):
        rng.shuffle(words)
        return words

    variants = {
        "identical": lambda w: w,
        "every other word": lambda w: w[::2],
        "first half": lambda w: w[:len(w) // 2],
        "words shuffled": shuffled,
        "upper case + ' .'": lambda w: [x.upper() for x in w] + ["."],
        "empty": lambda w: [],
    }
    same = []
    for name, change in variants.items():
        pred = os.path.join(work, "bleu_pred.txt")
        write(pred, [f"{i}\t{' '.join(change(t.split()))}\n" for i, t in gold])
        script = os.path.join(os.path.dirname(args.codebert), "bleu.py")
        with open(pred) as stdin:
            theirs = subprocess.run([args.python, script, gold_path], stdin=stdin,
                                    capture_output=True, text=True).stdout.split()[-1]
        with open(pred) as stdin:
            mine = subprocess.run([os.path.join(args.examples, "bleu"), gold_path], stdin=stdin,
                                  capture_output=True, text=True).stdout.split()[-1]
        same.append((name, theirs, mine))
    detail = "; ".join(f"{name}: {theirs}" + ("" if theirs == mine else f" vs ours {mine}")
                       for name, theirs, mine in same)
    return [("BLEU: bleu.py vs `bleu`, printed values (1 261 ruby test docstrings)", detail,
             all(theirs == mine for _, theirs, mine in same))]


def compare_decoding(args, work, pre, checkpoint, label):
    data = os.path.join(work, "test.jsonl")
    write(data, lines(args.test_data, 0, args.test_examples))
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    original_dir = os.path.join(work, f"decode_{slug}_original")
    ours_dir = os.path.join(work, f"decode_{slug}_ours")
    weights = os.path.join(checkpoint, "pytorch_model.bin")
    lengths = ["--max_source_length", str(args.max_source_len),
               "--max_target_length", str(args.max_target_len)]
    run([args.python, os.path.join(HERE, "run_original.py"), "--script", args.codebert,
         *SMALL_SHAPE, "--no-dropout", "--", "--do_test", "--model_type", "roberta",
         "--model_name_or_path", pre, "--load_model_path", weights, "--test_filename", data,
         "--output_dir", original_dir, *lengths, "--beam_size", str(args.beam_size),
         "--eval_batch_size", "16", "--no_cuda"], original_dir + ".log")
    nbest_original = os.path.join(original_dir, "nbest.jsonl")
    run([args.python, os.path.join(HERE, "nbest_original.py"), "--script", args.codebert,
         "--pretrained", pre, "--checkpoint", weights, "--data", data, "--out", nbest_original,
         "--beam-size", str(args.beam_size), *SMALL_SHAPE, "--max-source-len", str(args.max_source_len),
         "--max-target-len", str(args.max_target_len)])
    run([os.path.join(args.examples, "evaluate"), "--checkpoint", checkpoint,
         "--tokenizer", args.tokenizer, "--data", data, "--max-source-len",
         str(args.max_source_len), "--max-target-len", str(args.max_target_len),
         "--batch-size", "16", "--nbest", str(args.beam_size), "--beam-size",
         str(args.beam_size), "--device", "cpu",
         "--output-dir", ours_dir], ours_dir + ".log")
    original = open(os.path.join(original_dir, "test_0.output")).read().splitlines()
    ours = open(os.path.join(ours_dir, "test.output")).read().splitlines()
    same_rows0 = sum(a == b for a, b in zip(original, ours))
    files_same = all(
        open(os.path.join(original_dir, f"test_0.{kind}"), "rb").read()
        == open(os.path.join(ours_dir, f"test.{kind}"), "rb").read()
        for kind in ("output", "gold"))
    rows_total = rows_same = examples_same = 0
    lengths_seen = set()
    with open(nbest_original) as f_original, open(os.path.join(ours_dir, "nbest.jsonl")) as f_ours:
        for line_original, line_ours in zip(f_original, f_ours):
            theirs = json.loads(line_original)["rows"]
            mine = [h["ids"] for h in json.loads(line_ours)["hypotheses"]]
            rows_total += len(theirs)
            rows_same += sum(a == b for a, b in zip(theirs, mine))
            examples_same += theirs == mine
            lengths_seen.update(len(row) for row in theirs)
    # Counted, not judged: on a random model, float rounding decides near-ties (parity.md).
    return [(f"decoding, {label}, beam {args.beam_size}: `test_0.output` rows / n-best lists / "
             "n-best rows identical",
             f"{same_rows0} / {len(original)}; {examples_same} / {len(original)}; "
             f"{rows_same} / {rows_total} (hypothesis lengths {min(lengths_seen)}–"
             f"{max(lengths_seen)}); files byte-identical: {'yes' if files_same else 'no'}",
             None)]


def compare_training(args, work, pre, case):
    name, variant, original_flags, our_flags = case[:4]
    source_len, target_len = case[4] if len(case) > 4 else ("64", "32")
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    case_dir = os.path.join(work, slug)
    script = args.codebert if variant == "A" else args.codexglue
    train, dev = os.path.join(work, "train.jsonl"), os.path.join(work, "dev.jsonl")
    original_dir, ours_dir = os.path.join(case_dir, "original"), os.path.join(case_dir, "ours")
    original_log = os.path.join(case_dir, "original.log")
    os.makedirs(case_dir, exist_ok=True)
    run([args.python, os.path.join(HERE, "run_original.py"), "--script", script, *SMALL_SHAPE,
         "--no-dropout", "--sequential", "--", "--do_train", "--do_eval", "--model_type",
         "roberta", "--model_name_or_path", pre, "--load_model_path",
         os.path.join(SMALL, "pytorch_model.bin"), "--train_filename", train,
         "--dev_filename", dev, "--output_dir", original_dir, "--max_source_length", source_len,
         "--max_target_length", target_len, "--no_cuda", *original_flags.split()], original_log)
    run([os.path.join(args.examples, "train"), "--init", SMALL, "--train-data", train,
         "--dev-data", dev, "--tokenizer", args.tokenizer, "--output-dir", ours_dir,
         "--max-source-len", source_len, "--max-target-len", target_len, "--dropout", "0",
         "--no-shuffle", "--device", "cpu", "--accumulation", "reference", *our_flags.split()],
        os.path.join(case_dir, "ours.log"))
    text = open(original_log).read()
    ppl = [float(x) for x in re.findall(r"eval_ppl = ([0-9.]+)", text)]
    bleu = [float(x) for x in re.findall(r"bleu-4 = ([0-9.]+)", text)]
    with open(os.path.join(ours_dir, "metrics.jsonl")) as f:
        evals = [r for r in map(json.loads, f) if r["kind"] == "eval"]
    worst_ppl = max((abs(math.log(p) - r["dev_loss"]) for p, r in zip(ppl, evals)), default=0.0)
    bleu_same = len(bleu) == len(evals) and all(
        b == round(r["dev_bleu"], 2) for b, r in zip(bleu, evals))
    weights = []
    for checkpoint in ("checkpoint-best-ppl", "checkpoint-best-bleu"):
        theirs = os.path.join(original_dir, checkpoint, "pytorch_model.bin")
        mine = os.path.join(ours_dir, checkpoint, "model.safetensors")
        if os.path.exists(theirs) != os.path.exists(mine):
            weights.append((checkpoint, float("inf")))
        elif os.path.exists(theirs):
            weights.append((checkpoint, max_weight_diff(theirs, mine)))
    dev_same = all(
        open(os.path.join(original_dir, f)).read() == open(os.path.join(ours_dir, f)).read()
        for f in ("dev.output", "dev.gold"))
    worst_weight = max((d for _, d in weights), default=0.0)
    detail = (f"{len(evals)}/{len(ppl)} evaluations; dev loss within {worst_ppl:.1e}; "
              f"BLEU {'equal' if bleu_same else 'DIFFERENT'}; "
              f"{', '.join(c for c, _ in weights)} weights within {worst_weight:.1e}; "
              f"dev.output {'same' if dev_same else 'DIFFERENT'}")
    ok = (len(evals) == len(ppl) and worst_ppl < 5e-6 and bleu_same and worst_weight < 1e-5
          and dev_same)
    return [(f"training {variant}: {name}", detail, ok)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="a Python with torch and transformers 2.5.0")
    parser.add_argument("--codebert", required=True, help="CodeBERT/code2nl/run.py")
    parser.add_argument("--codexglue", required=True, help="Code-Text/code-to-text/code/run.py")
    parser.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    parser.add_argument("--work", default="/tmp/c2n-original")
    parser.add_argument("--examples", default=os.path.join(ROOT, "target/release/examples"))
    parser.add_argument("--test-examples", type=int, default=100)
    parser.add_argument("--max-source-len", type=int, default=64)
    parser.add_argument("--max-target-len", type=int, default=32)
    parser.add_argument("--beam-size", type=int, default=10, help="of the decoding checks")
    parser.add_argument("--skip-static", action="store_true",
                        help="skip the feature and BLEU checks")
    parser.add_argument("--decode-only", action="store_true", help="skip the training cases")
    parser.add_argument("--training-only", action="store_true",
                        help="only the training cases (no features, BLEU or decoding)")
    parser.add_argument("--cases", default="",
                        help="only the training cases whose name contains this text")
    parser.add_argument("--eos-scales", type=float, nargs="*", default=[2.2, 2.6, 6.0],
                        help="also decode with the </s> embedding row scaled (EOS paths)")
    args = parser.parse_args()
    ruby = os.path.join(args.shared, "data/codesearchnet/ruby")
    args.tokenizer = os.path.join(args.shared, "data/roberta-base")
    args.test_data = os.path.join(ruby, "test.jsonl")
    os.makedirs(args.work, exist_ok=True)
    pre = os.path.join(args.work, "pretrained")
    run([args.python, os.path.join(HERE, "make_pretrained.py"), SMALL, args.tokenizer, pre,
         "--no-dropout"])
    write(os.path.join(args.work, "train.jsonl"), lines(os.path.join(ruby, "valid.jsonl"), 0, 16))
    write(os.path.join(args.work, "dev.jsonl"), lines(os.path.join(ruby, "valid.jsonl"), 16, 8))
    results = []
    if not args.training_only:
        if not args.skip_static:
            results += compare_features(args, args.work, pre)
            results += compare_bleu(args, args.work)
        results += compare_decoding(args, args.work, pre, SMALL, "random small model")
    for scale in [] if args.training_only else args.eos_scales:
        folder = os.path.join(args.work, f"eos_{scale}")
        run([args.python, os.path.join(HERE, "make_pretrained.py"), SMALL, args.tokenizer,
             os.path.join(args.work, "scratch"), "--eos-scale", str(scale), folder])
        results += compare_decoding(args, args.work, pre, folder, f"EOS row x{scale}")
    for case in [] if args.decode_only else TRAINING_CASES:
        if args.cases in case[0]:
            results += compare_training(args, args.work, pre, case)
    print("| check | result | ok |\n|---|---|---|")
    for what, detail, ok in results:
        print(f"| {what} | {detail} | {'counted' if ok is None else 'yes' if ok else 'NO'} |")
    sys.exit(0 if all(ok is not False for _, _, ok in results) else 1)


if __name__ == "__main__":
    main()
