#!/usr/bin/env python3
"""Training reference for c2n-train, written from docs/reference-semantics.md (§7, §8.5).

Nothing here is copied from the upstream CodeBERT/CodeXGLUE or transformers code: AdamW is the
transformers-2.5 formula of spec §7.2 written out by hand, the schedule is the multiplier of §7.3
driven through torch's LambdaLR, and the dev-BLEU subset is CPython's own ``random.sample``.

Subcommands (run from the repository root):

    python3 tools/reference/train_reference.py fixtures
        → crates/c2n-train/tests/data/{adamw_steps,schedule_lr,dev_subset}.json

    python3 tools/reference/train_reference.py train-steps
        → crates/c2n-train/tests/data/train_steps/ (small checkpoint, batches, losses, lrs,
          parameters after each of three updates, dropout off)

    python3 tools/reference/train_reference.py dev-gold [--shared ../shared]
        → crates/c2n-train/tests/data/ruby_valid_dev_gold_excerpt.txt (first 20 and last 3
          lines of the reference dev.gold for ruby valid)

    python3 tools/reference/train_reference.py bench [--padding reference|dynamic] [--steps N]
        → ms per training step of the reference loop on CPU (small config) on the batches
          that `cargo bench --bench train_step` wrote to target/bench-data/train_step/
"""

import argparse
import json
import math
import os
import random
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(ROOT, "crates", "c2n-train", "tests", "data")

NO_DECAY = ("bias", "LayerNorm.weight")


class ReferenceAdamW:
    """transformers-2.5 AdamW (spec §7.2): eps outside the sqrt of the uncorrected v, bias
    correction folded into the step size, decoupled weight decay after the update, and
    parameters whose ``.grad`` is None skipped with no state."""

    def __init__(self, named_params, weight_decay=0.0, eps=1e-8, betas=(0.9, 0.999)):
        self.params = sorted(named_params, key=lambda kv: kv[0])
        self.weight_decay = weight_decay
        self.eps = eps
        self.beta1, self.beta2 = betas
        self.state = {}

    def decays(self, name):
        return not any(pattern in name for pattern in NO_DECAY)

    @torch.no_grad()
    def step(self, lr):
        for name, p in self.params:
            if p.grad is None:
                continue
            g = p.grad
            st = self.state.setdefault(
                name, {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            )
            st["step"] += 1
            st["exp_avg"].mul_(self.beta1).add_(g, alpha=1.0 - self.beta1)
            st["exp_avg_sq"].mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
            denom = st["exp_avg_sq"].sqrt().add_(self.eps)
            step = st["step"]
            step_size = lr * math.sqrt(1.0 - self.beta2 ** step) / (1.0 - self.beta1 ** step)
            p.addcdiv_(st["exp_avg"], denom, value=-step_size)
            if self.decays(name) and self.weight_decay > 0.0:
                p.add_(p, alpha=-lr * self.weight_decay)

    def zero_grad(self):
        for _, p in self.params:
            p.grad = None


def linear_multiplier(warmup, total):
    """§7.3 multiplier after ``s`` scheduler steps."""

    def f(s):
        if s < warmup:
            return float(s) / float(max(1, warmup))
        return max(0.0, float(total - s) / float(max(1, total - warmup)))

    return f


def lr_sequence(base_lr, warmup, total, updates):
    """The lr used by updates 1..updates, read from torch's LambdaLR as the reference steps it."""
    dummy = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([dummy], lr=base_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_multiplier(warmup, total))
    out = []
    for _ in range(updates):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def tensor_json(t):
    return {"shape": list(t.shape), "values": [float(x) for x in t.detach().reshape(-1).tolist()]}


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
    print("wrote", os.path.relpath(path, ROOT))


def adamw_fixture():
    gen = torch.Generator().manual_seed(1234)
    shapes = {
        "encoder.layer.0.dense.weight": (3, 4),  # decay
        "encoder.layer.0.dense.bias": (4,),  # no decay
        "encoder.LayerNorm.weight": (4,),  # no decay
        "decoder.layers.0.norm1.weight": (4,),  # decay (no `LayerNorm.weight` in the name)
        "encoder.pooler.dense.weight": (2, 2),  # never gets a gradient
    }
    params = {n: torch.nn.Parameter(torch.randn(s, generator=gen)) for n, s in shapes.items()}
    initial = {n: tensor_json(p) for n, p in params.items()}
    opt = ReferenceAdamW(list(params.items()), weight_decay=0.01)
    lrs = [0.0, 1e-3, 2e-3, 1.5e-3, 5e-4]
    steps = []
    for i, lr in enumerate(lrs):
        grads = {}
        for n, p in params.items():
            if n == "encoder.pooler.dense.weight":
                p.grad = None
                continue
            if n == "decoder.layers.0.norm1.weight" and i == 0:
                p.grad = None  # first gradient only at update 2: its step counter lags by one
                continue
            scale = 1e-3 if i == 3 else 1.0  # a tiny gradient makes eps matter
            p.grad = scale * torch.randn(p.shape, generator=gen)
            grads[n] = tensor_json(p.grad)
        opt.step(lr)
        steps.append({"lr": lr, "grads": grads, "params_after": {n: tensor_json(p) for n, p in params.items()}})
    final_state = {
        n: {"step": st["step"], "exp_avg": tensor_json(st["exp_avg"]), "exp_avg_sq": tensor_json(st["exp_avg_sq"])}
        for n, st in opt.state.items()
    }
    write_json(
        os.path.join(DATA, "adamw_steps.json"),
        {
            "regenerate": "python3 tools/reference/train_reference.py fixtures",
            "weight_decay": 0.01,
            "eps": 1e-8,
            "initial": initial,
            "steps": steps,
            "final_state": final_state,
        },
    )


def schedule_fixture():
    cases = []
    # Variant A: W = warmup_steps, N = train_steps; run past N to see lr 0.
    for warmup, total in [(0, 7), (3, 10), (0, 1)]:
        cases.append(
            {"variant": "A", "base_lr": 5e-5, "warmup": warmup, "total": total,
             "lrs": lr_sequence(5e-5, warmup, total, total + 2)}
        )
    # Variant B: t_total = (len(loader) // GA) * epochs, W = int(0.1 * t_total).
    for batches, ga, epochs in [(23, 2, 3), (77, 1, 10), (5, 1, 2)]:
        total = batches // ga * epochs
        warmup = int(total * 0.1)
        cases.append(
            {"variant": "B", "base_lr": 5e-5, "batches_per_epoch": batches, "grad_accum": ga,
             "epochs": epochs, "warmup": warmup, "total": total,
             "lrs": lr_sequence(5e-5, warmup, total, total + 2)}
        )
    write_json(
        os.path.join(DATA, "schedule_lr.json"),
        {"regenerate": "python3 tools/reference/train_reference.py fixtures", "cases": cases},
    )


def subset_fixture():
    out = {"regenerate": "python3 tools/reference/train_reference.py fixtures", "python": sys.version.split()[0]}
    for n in (1400, 13914, 30):
        random.seed(42)
        out[str(n)] = random.sample(range(n), min(1000, n))
    write_json(os.path.join(DATA, "dev_subset.json"), out)


# ---------------------------------------------------------------------------------------------
# Training-step parity (spec §12 item 16): a tiny model exported from the reference, fixed
# batches, dropout off, the variant-A loop of §7.4 written out (GA rule included).

TINY = dict(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=16,
            max_position_embeddings=24, decoder_layers=2, decoder_ffn_dim=16)
MAX_SOURCE_LEN = 12
MAX_TARGET_LEN = 8
TRAIN_BASE_LR = 1e-3
TRAIN_WARMUP = 1
TRAIN_WEIGHT_DECAY = 0.01


def import_model_reference():
    sys.path.insert(0, HERE)
    from c2n_reference import ModelConfig, Seq2Seq, save_safetensors  # noqa: E402

    return ModelConfig, Seq2Seq, save_safetensors


def tiny_features(gen, count):
    """Unpadded features ``[0] + ids + [2]``; one source carries a literal ``<pad>`` (id 1)."""
    feats = []
    for i in range(count):
        s_len = int(torch.randint(2, MAX_SOURCE_LEN - 1, (1,), generator=gen))
        t_len = int(torch.randint(1, MAX_TARGET_LEN - 1, (1,), generator=gen))
        src = torch.randint(3, TINY["vocab_size"], (s_len,), generator=gen).tolist()
        tgt = torch.randint(3, TINY["vocab_size"], (t_len,), generator=gen).tolist()
        if i == 1 and s_len > 2:
            src[1] = 1
        feats.append({"idx": i, "source_ids": [0] + src + [2], "target_ids": [0] + tgt + [2]})
    return feats


def pad_batch(feats):
    def pad(rows, length):
        ids = torch.ones((len(rows), length), dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        return ids, mask

    s, sm = pad([f["source_ids"] for f in feats], MAX_SOURCE_LEN)
    t, tm = pad([f["target_ids"] for f in feats], MAX_TARGET_LEN)
    return s, sm, t, tm


def reference_loop_a(model, feats, micro_batch, ga, train_steps):
    """§7.4 without evaluation: cycled file-order batches, loss / GA, the off-by-one update
    rule ``(nb_tr_steps + 1) % GA == 0``, lr from the §7.3 schedule (W, N = train_steps)."""
    batches = [feats[i : i + micro_batch] for i in range(0, len(feats), micro_batch)]
    opt = ReferenceAdamW(list(model.named_parameters()), weight_decay=TRAIN_WEIGHT_DECAY)
    multiplier = linear_multiplier(TRAIN_WARMUP, train_steps)
    losses, lrs, snapshots = [], [], {}
    nb_tr_steps, global_step = 0, 0
    for step in range(train_steps):
        loss, _, _ = model(*pad_batch(batches[step % len(batches)]))
        losses.append(loss.item())
        if ga > 1:
            loss = loss / ga
        nb_tr_steps += 1
        loss.backward()
        if (nb_tr_steps + 1) % ga == 0:
            lr = TRAIN_BASE_LR * multiplier(global_step)
            opt.step(lr)
            opt.zero_grad()
            global_step += 1
            lrs.append(lr)
            for name, p in model.named_parameters():
                snapshots[f"update{global_step}.{name}"] = p.detach().clone().contiguous()
    # State of the pad rows for direct checks: the position table's row 1 never has Adam state.
    pos = opt.state["encoder.embeddings.position_embeddings.weight"]
    extra = {"position_row1_exp_avg_max": float(pos["exp_avg"][1].abs().max()),
             "word_row1_exp_avg_max": float(opt.state["encoder.embeddings.word_embeddings.weight"]["exp_avg"][1].abs().max())}
    return losses, lrs, snapshots, extra


def reference_loop_b(model, feats, micro_batch, ga, epochs):
    """§7.5 with evaluation on (so ``nb_tr_steps`` resets after every epoch) and file order
    (no shuffle): loss / GA, the update rule of §7.4, schedule B (``t_total =
    (len(loader) // GA) * epochs``, ``W = int(0.1 * t_total)``)."""
    batches = [feats[i : i + micro_batch] for i in range(0, len(feats), micro_batch)]
    opt = ReferenceAdamW(list(model.named_parameters()), weight_decay=TRAIN_WEIGHT_DECAY)
    t_total = len(batches) // ga * epochs
    multiplier = linear_multiplier(int(t_total * 0.1), t_total)
    losses, lrs, snapshots = [], [], {}
    nb_tr_steps, global_step = 0, 0
    for _ in range(epochs):
        for batch in batches:
            loss, _, _ = model(*pad_batch(batch))
            losses.append(loss.item())
            if ga > 1:
                loss = loss / ga
            nb_tr_steps += 1
            loss.backward()
            if (nb_tr_steps + 1) % ga == 0:
                lr = TRAIN_BASE_LR * multiplier(global_step)
                opt.step(lr)
                opt.zero_grad()
                global_step += 1
                lrs.append(lr)
                for name, p in model.named_parameters():
                    snapshots[f"update{global_step}.{name}"] = p.detach().clone().contiguous()
        nb_tr_steps = 0  # evaluation at the epoch end resets the phase
    pos = opt.state["encoder.embeddings.position_embeddings.weight"]
    extra = {"position_row1_exp_avg_max": float(pos["exp_avg"][1].abs().max()),
             "word_row1_exp_avg_max": float(opt.state["encoder.embeddings.word_embeddings.weight"]["exp_avg"][1].abs().max())}
    return losses, lrs, snapshots, extra


def train_steps_fixture():
    from safetensors.torch import save_file

    ModelConfig, Seq2Seq, save_safetensors = import_model_reference()
    out = os.path.join(DATA, "train_steps")
    os.makedirs(os.path.join(out, "init"), exist_ok=True)
    torch.manual_seed(0)
    cfg = ModelConfig(**TINY)
    model = Seq2Seq(cfg)
    gen = torch.Generator().manual_seed(777)
    model.randomize(gen, std=0.3)
    cfg.save_json(os.path.join(out, "init", "config.json"))
    save_safetensors(model, os.path.join(out, "init", "model.safetensors"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    feats = tiny_features(gen, 6)
    cases = {}
    for name, micro_batch, ga, train_steps in [("ga1", 2, 1, 3), ("ga2", 2, 2, 4)]:
        model.load_state_dict(initial)
        model.eval()  # dropout off (spec §7.6: training parity runs without dropout)
        model.zero_grad(set_to_none=True)
        losses, lrs, snapshots, extra = reference_loop_a(model, feats, micro_batch, ga, train_steps)
        save_file(snapshots, os.path.join(out, f"expected_{name}.safetensors"))
        cases[name] = {"batch_size": micro_batch * ga, "grad_accum": ga, "train_steps": train_steps,
                       "losses": losses, "lrs": lrs, **extra}
    # Variant B: 3 batches per epoch, GA 2, 2 epochs → t_total 2, W 0; updates 3 and 4 at lr 0.
    model.load_state_dict(initial)
    model.eval()
    model.zero_grad(set_to_none=True)  # the GA 2 case leaves its last batch's gradient pending
    losses, lrs, snapshots, extra = reference_loop_b(model, feats, 2, 2, 2)
    save_file(snapshots, os.path.join(out, "expected_b_ga2.safetensors"))
    cases["b_ga2"] = {"batch_size": 4, "grad_accum": 2, "epochs": 2, "losses": losses, "lrs": lrs, **extra}
    # Variant B with warmup: 3 batches per epoch, GA 1, 4 epochs → t_total 12, W 1: the first
    # update runs at lr 0 (and still advances Adam's state), the second at the peak.
    model.load_state_dict(initial)
    model.eval()
    model.zero_grad(set_to_none=True)
    losses, lrs, snapshots, extra = reference_loop_b(model, feats, 2, 1, 4)
    assert lrs[0] == 0.0 and lrs[1] == TRAIN_BASE_LR, lrs
    save_file(snapshots, os.path.join(out, "expected_b_warmup.safetensors"))
    cases["b_warmup"] = {"batch_size": 2, "grad_accum": 1, "epochs": 4, "losses": losses, "lrs": lrs, **extra}
    write_json(
        os.path.join(out, "expected.json"),
        {"regenerate": "python3 tools/reference/train_reference.py train-steps",
         "max_source_len": MAX_SOURCE_LEN, "max_target_len": MAX_TARGET_LEN, "lr": TRAIN_BASE_LR,
         "warmup_steps": TRAIN_WARMUP, "weight_decay": TRAIN_WEIGHT_DECAY, "features": feats, "cases": cases},
    )


def dev_gold_fixture(shared):
    """§8.2: ``dev.gold`` of ruby valid — the seeded 1000-example subset in sample order,
    ``<idx>\t<target>`` with the target normalized as §1.5 (``\n`` deleted, whitespace
    runs collapsed with Python's ``str.split``). Keeps the first 20 and last 3 lines."""
    path = os.path.join(shared, "data", "codesearchnet", "ruby", "valid.jsonl")
    targets = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line.strip())
            text = " ".join(record["docstring_tokens"]).replace("\n", "")
            targets.append(" ".join(text.strip().split()))
    random.seed(42)
    chosen = random.sample(range(len(targets)), min(1000, len(targets)))
    lines = [f"{i}\t{targets[i]}\n" for i in chosen]
    out = os.path.join(DATA, "ruby_valid_dev_gold_excerpt.txt")
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(lines[:20] + lines[-3:])
    print("wrote", os.path.relpath(out, ROOT))


def bench(batches_path, steps, padding, threads):
    """ms per training step (forward + backward + reference AdamW) of the small model on the
    batches the Rust bench wrote, padded like the Rust run (reference 256/128 or dynamic)."""
    ModelConfig, Seq2Seq, _ = import_model_reference()
    if threads:
        torch.set_num_threads(threads)
    with open(batches_path) as f:
        batches = json.load(f)
    torch.manual_seed(0)
    model = Seq2Seq(ModelConfig.small())
    model.train()  # dropout 0.1, as in the Rust bench
    opt = ReferenceAdamW(list(model.named_parameters()))

    def tensors(batch):
        def pad(rows, length):
            ids = torch.ones((len(rows), length), dtype=torch.long)
            mask = torch.zeros((len(rows), length), dtype=torch.long)
            for r, row in enumerate(rows):
                ids[r, : len(row)] = torch.tensor(row)
                mask[r, : len(row)] = 1
            return ids, mask

        s_len = 256 if padding == "reference" else max(len(r) for r in batch["source_ids"])
        t_len = 128 if padding == "reference" else max(len(r) for r in batch["target_ids"])
        return (*pad(batch["source_ids"], s_len), *pad(batch["target_ids"], t_len))

    prepared = [tensors(b) for b in batches]

    def step(i):
        loss, _, _ = model(*prepared[i % len(prepared)])
        loss.backward()
        opt.step(5e-5)
        opt.zero_grad()

    for i in range(2):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    ms = (time.perf_counter() - start) * 1000 / steps
    print(f"reference train step ({padding} padding, batch {len(batches[0]['source_ids'])}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads): {ms:.1f} ms/step")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fixtures")
    sub.add_parser("train-steps")
    gold = sub.add_parser("dev-gold")
    gold.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared"))
    b = sub.add_parser("bench")
    b.add_argument("--batches", default=os.path.join(ROOT, "target", "bench-data", "train_step", "batches.json"))
    b.add_argument("--steps", type=int, default=16)
    b.add_argument("--padding", choices=["reference", "dynamic"], default="reference")
    b.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.cmd == "fixtures":
        adamw_fixture()
        schedule_fixture()
        subset_fixture()
    elif args.cmd == "train-steps":
        train_steps_fixture()
    elif args.cmd == "dev-gold":
        dev_gold_fixture(args.shared)
    elif args.cmd == "bench":
        bench(args.batches, args.steps, args.padding, args.threads)


if __name__ == "__main__":
    main()
