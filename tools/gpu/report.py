#!/usr/bin/env python3
"""Collect the result lines of a ``scripts/gpu-check.sh`` run into one JSON file and one
Markdown report (environment, steps, parity, training, decoding).

    python3 tools/gpu/report.py --steps WORK/steps.jsonl --json OUT/gpu-check.json --md OUT/gpu-check.md

``steps.jsonl`` has one line per step (``step``, ``status``, ``rc``, ``seconds``,
``timeout_s``, ``stdout``); every line of a step's stdout that parses as a JSON object with a
``check`` field is a result. MFU = model FLOPs of the computed (padded) shapes
(``tools/gpu/flops.py``) per second / the measured bf16 matmul peak (``peak_matmul``).
"""

import argparse
import json
import os

from flops import train_step_flops

GIB = float(1 << 30)


def load_results(steps):
    results = []
    for step in steps:
        path = step.get("stdout")
        if not path or not os.path.exists(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict) and "check" in value:
                    value["step"] = step["step"]
                    results.append(value)
    return results


def fmt(x, spec=".3g", none="–"):
    if x is None:
        return none
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, (int, float)):
        return format(x, spec)
    return str(x)


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def peak_memory(r):
    m = r.get("memory") or {}
    if r.get("impl") == "torch":
        a, res = m.get("allocated_peak_bytes"), m.get("reserved_peak_bytes")
        return "–" if a is None else f"{a / GIB:.1f} alloc / {res / GIB:.1f} reserved"
    pool, used, before = m.get("pool_peak_bytes"), m.get("device_used_peak_bytes"), m.get("device_used_before_bytes")
    host, host_before = m.get("host_live_peak_bytes"), m.get("host_live_before_bytes")
    if pool is None and used is None:
        # CPU runs: the live host heap (a counting allocator in the bench binary).
        if host is None or host_before is None:
            return "–"
        return f"{host / GIB:.2f} host heap ({(host - host_before) / GIB:.2f} above the start)"
    parts = []
    if pool is not None:
        parts.append(f"{pool / GIB:.1f} pool")
    if used is not None and before is not None:
        parts.append(f"{(used - before) / GIB:.1f} device Δ")
    return " / ".join(parts)


def phases_ms(p, keys):
    if not p:
        return "–"
    return " / ".join(fmt(None if p.get(k) is None else 1000 * p[k], ".1f") for k in keys)


def host_and_tensors(p):
    """Milliseconds until each phase had queued its last op, with the tensors it created: a
    queued time close to the phase's synchronised time means the host is the bound."""
    if not p or not p.get("host_enqueue_s"):
        return "–"
    host, made = p["host_enqueue_s"], p.get("tensors_created") or {}
    return " / ".join(f"{fmt(1000 * host[k], '.1f')} ({fmt(made.get(k), 'd')})"
                      for k in ("forward", "backward", "optimizer"))


def step_result(results, check, step):
    return next((r for r in results if r["check"] == check and r.get("step") == step), None)


def loss_rel_diff(a, b):
    """The largest relative difference of two runs' losses over their common steps."""
    pairs = list(zip(a.get("losses") or [], b.get("losses") or []))
    return max((abs(x - y) / max(abs(x), 1e-12) for x, y in pairs), default=None)


def tensors_per_step(r):
    """The tensors a bench_train step created, all phases together."""
    return sum(((r.get("phases") or {}).get("tensors_created") or {}).values()) or None


def leave_one_out(results, train):
    """Each fewer-launch kernel's share of the best setting: every kernel (the default) against
    every kernel but that one (a speed-up below 1 says the kernel costs time), and each run's
    losses against those of the run without any (a kernel whose absence removes a loss
    difference is the one causing it)."""
    prefix = "train_candle_bf16_bucketed_without_"
    every, default = train("train_candle_bf16_bucketed"), train("train_candle_bf16_bucketed_nofewer")
    rows = []
    for r in results:
        step = r.get("step") or ""
        if r["check"] != "bench_train" or not step.startswith(prefix) or not every:
            continue
        rows.append([step[len(prefix):], f"{every['samples_per_s'] / r['samples_per_s']:.3f}×",
                     fmt(1e3 * r["median_step_s"], ".1f"), fmt(tensors_per_step(r), ".0f"),
                     fmt(loss_rel_diff(default, r)) if default else "–",
                     ", ".join(r.get("fewer_launch_failures") or []) or "none"])
    if not rows:
        return []
    return ["## Each fewer-launch kernel's share (bf16 bucketed, all kernels against all but one)", "",
            f"All kernels: {fmt(1e3 * every['median_step_s'], '.1f')} ms median step; all but one:", ""] + \
        table(["kernel left out", "its speed-up", "median step ms without it", "tensors per step",
               "loss max rel diff against no fewer-launch kernels", "kernels that failed (fell back)"], rows) + [""]


def repeats(results):
    """The training steps run several times (``<variant>_rep<i>``): each variant's median step
    and samples/s over its repeats, with the spread, and the ratio of medians to the reference."""
    import re
    import statistics
    runs = {}
    for r in results:
        m = re.fullmatch(r"(.*)_rep(\d+)", r.get("step") or "")
        if r["check"] == "bench_train" and m:
            runs.setdefault(m.group(1), []).append(r)
    if not runs:
        return [], None
    torch = runs.get("train_torch_f32_padded")
    torch_median = statistics.median(r["samples_per_s"] for r in torch) if torch else None
    rows, best = [], None
    for variant, rs in runs.items():
        rate = statistics.median(r["samples_per_s"] for r in rs)
        steps = [1e3 * r["median_step_s"] for r in rs]
        ratio = rate / torch_median if torch_median else None
        if ratio and rs[0].get("impl") != "torch" and (best is None or ratio > best[0]):
            best = (ratio, variant, len(rs))
        rows.append([variant, len(rs), fmt(statistics.median(steps), ".1f"),
                     f"{fmt(min(steps), '.1f')}–{fmt(max(steps), '.1f')}", fmt(rate, ".1f"),
                     f"{ratio:.2f}×" if ratio else "–"])
    md = ["## Repeats (training, median over the repeats)", ""] + \
        table(["variant", "repeats", "median step ms", "step ms range", "median samples/s",
               "vs torch (ratio of medians)"], rows) + [""]
    return md, best


def targets(results):
    """The issue's three speed targets and the A/Bs of the kernel switches, first thing in the
    report, so a session can decide what stays default."""
    md = []
    train = lambda step: step_result(results, "bench_train", step)  # noqa: E731
    decode = lambda step: step_result(results, "bench_decode", step)  # noqa: E731
    torch_train, torch_decode = train("train_torch_f32_padded"), decode("decode_torch_reference")
    rows = []
    if torch_train:
        base = torch_train["samples_per_s"]
        f32 = [train(s) for s in ("train_candle_f32_padded", "train_candle_f32_padded_pool")]
        f32 = [r for r in f32 if r]
        best = [r for r in results if r["check"] == "bench_train" and r.get("impl") != "torch"
                and r.get("batch_size") == torch_train.get("batch_size")]
        if f32:
            top = max(f32, key=lambda r: r["samples_per_s"])
            rows.append(["training f32 padded", "≥ 1.0×", f"{top['samples_per_s'] / base:.2f}×", top["step"]])
        if best:
            top = max(best, key=lambda r: r["samples_per_s"])
            rows.append(["training, best setting", "≥ 5×", f"{top['samples_per_s'] / base:.2f}×", top["step"]])
    if torch_decode:
        ours = [r for r in results if r["check"] == "bench_decode" and r.get("impl") != "torch"
                and r.get("step", "").startswith("decode_candle_all")]
        if ours:
            top = max(ours, key=lambda r: r["examples_per_s"])
            rows.append(["decoding, all test examples", "≥ 50×",
                         f"{top['examples_per_s'] / torch_decode['examples_per_s']:.1f}×", top["step"]])
    repeat_md, best_repeat = repeats(results)
    if best_repeat:
        ratio, variant, n = best_repeat
        rows.append(["training, best setting, median of repeats", "≥ 5×", f"{ratio:.2f}×",
                     f"{variant} ×{n}"])
    if rows:
        md += ["## Targets", ""] + table(["target", "wanted", "best measured", "step"], rows) + [""]
    md += repeat_md

    rows = []
    ident = lambda r: (lambda c: f"{c['nbest_identical']}/{c['compared']}" if c else "–")(r.get("comparison"))  # noqa: E731
    for default_step, other_step, check in [
            ("train_candle_f32_padded_pool_nofewer", "train_candle_f32_padded_pool_trainops", "bench_train"),
            ("train_candle_bf16_dynamic_nofewer", "train_candle_bf16_dynamic_trainops", "bench_train"),
            ("train_candle_f32_padded_pool_nofewer", "train_candle_f32_padded_pool_lnops", "bench_train"),
            ("decode_candle_all", "decode_candle_all_dense", "bench_decode"),
            ("decode_candle_subset", "decode_candle_subset_dense", "bench_decode"),
            ("decode_candle_sharp", "decode_candle_sharp_dense", "bench_decode"),
            ("decode_candle_all", "decode_candle_all_cross_kernel", "bench_decode")]:
        a, b = step_result(results, check, default_step), step_result(results, check, other_step)
        if a and b:
            key = "samples_per_s" if check == "bench_train" else "examples_per_s"
            nbest = f"{ident(a)} / {ident(b)}" if check == "bench_decode" else "–"
            rows.append([default_step, other_step, f"{a[key] / b[key]:.3f}×", nbest])
    fewer = []
    for default_step, other_step in [
            ("train_candle_f32_padded_pool", "train_candle_f32_padded_pool_nofewer"),
            ("train_candle_bf16_dynamic", "train_candle_bf16_dynamic_nofewer"),
            ("train_candle_bf16_bucketed", "train_candle_bf16_bucketed_nofewer")]:
        a, b = train(default_step), train(other_step)
        if a and b:
            fewer.append([default_step, other_step, f"{a['samples_per_s'] / b['samples_per_s']:.3f}×",
                          f"{fmt(1e3 * b['median_step_s'], '.1f')} → {fmt(1e3 * a['median_step_s'], '.1f')}",
                          f"{fmt(tensors_per_step(b), '.0f')} → {fmt(tensors_per_step(a), '.0f')}",
                          fmt(loss_rel_diff(b, a)), ", ".join(a.get("fewer_launch_failures") or []) or "none"])
    if fewer:
        md += ["## Fewer-launch kernels: the default against C2N_CUDA_FEWER_LAUNCHES=0 (keep them while faster and parity holds)",
               ""] + table(["default", "without them", "default's speed-up", "median step ms (without → with)",
                            "tensors per step (without → with)", "loss max rel diff over the steps",
                            "kernels that failed (fell back)"], fewer) + [""]
    md += leave_one_out(results, train)
    sorted_batches, file_order = decode("decode_candle_all"), decode("decode_candle_all_file_order")
    if sorted_batches and file_order:
        md += ["- Decoding batches longest source first (the default now) against file order (run 6): "
               f"{sorted_batches['examples_per_s'] / file_order['examples_per_s']:.3f}× "
               f"({fmt(sorted_batches['seconds'], '.1f')} s against {fmt(file_order['seconds'], '.1f')} s; "
               f"encode {fmt(sorted_batches['phases']['encode_s'], '.2f')} against "
               f"{fmt(file_order['phases']['encode_s'], '.2f')} s)", ""]
    kernels = [r for r in results if r["check"] == "check_kernels"
               and r.get("kernel") in ("gelu_backward", "column_sum", "slot_attention", "cross_attention", "pack",
                                  "dropout_add_layer_norm", "layer_norm_backward",
                                  "layer_norm_backward_fused", "bias_activation_dropout", "heads")]
    if rows or kernels:
        md += ["## Kernel switches: the defaults against the alternative (keep a default only while it is faster)",
               ""]
        if kernels:
            md += ["- check_kernels: " + ", ".join(f"{r['kernel']} {'not run' if 'note' in r else fmt(r.get('ok'))}"
                                          for r in kernels)]
        md += [""]
        if rows:
            md += table(["default", "alternative", "default's speed-up", "n-best identical to torch (default / alternative)"],
                        rows) + [""]
    return md


def build(steps, results, mode):
    by = lambda check: [r for r in results if r["check"] == check]  # noqa: E731
    md = [f"# code2nl GPU check ({mode})", ""]
    env = by("env")
    peak = by("peak_matmul")
    peak_tflops = peak[0]["tflops"] if peak else None
    if env:
        e = env[0]
        md += [f"- GPU: {e.get('gpu') or e.get('nvidia_smi') or 'none'}; nvidia-smi: {e.get('nvidia_smi')}",
               f"- {e.get('nvidia_smi_cuda') or 'no driver'}; torch {e.get('torch')} (CUDA {e.get('torch_cuda')});"
               f" glibc {e.get('glibc')}; {e.get('nproc')} CPUs",
               f"- device binary libraries not found: {e.get('ldd_not_found') or 'none'}"]
    if peak:
        p = peak[0]
        md.append(f"- measured {p['dtype']} matmul peak ({p['n']}³): {p['tflops']:.1f} TFLOP/s (median)")
    md.append("")
    md += targets(results)

    parity = [r for r in results if r["check"].startswith("parity_")]
    if parity:
        rows = []
        for r in parity:
            if r["check"].startswith("parity_model"):
                beam = (f"beam ids {r.get('beam_batched_ids_identical', r.get('beam_ids_identical'))}/{r.get('beam_cases')}"
                        + (f", reference path {r['beam_reference_ids_identical']}/{r['beam_cases']}"
                           if "beam_reference_ids_identical" in r else ""))
                figures = (f"encoder {fmt(r.get('encoder_max_rel_diff'))}, logits {fmt(r.get('logits_slice_max_rel_diff'))}, "
                           f"lse {fmt(r.get('logsumexp_max_rel_diff'))}, loss {fmt(r.get('loss_rel_diff'))}, "
                           f"argmax mismatches {r.get('argmax_mismatches')}, {beam}, "
                           f"score {fmt(r.get('beam_max_score_rel_diff'))}")
                for path in ("graph", "explicit"):
                    g = r.get(f"grads_{path}")
                    if g:
                        figures += (f"; {path} gradients: sum {fmt(g.get('sum_max_rel_diff'))}, "
                                    f"sum² {fmt(g.get('sumsq_max_rel_diff'))}, "
                                    f"presence mismatches {g.get('presence_mismatches')}")
            else:
                figures = (f"{r.get('case')}: {r.get('updates')} updates, lrs equal {fmt(r.get('lrs_equal'))}, "
                           f"loss {fmt(r.get('loss_max_rel_diff'))}, params max abs {fmt(r.get('param_max_abs_diff'))}"
                           + (f", violations {r['param_violations']}" if "param_violations" in r else "")
                           + (f"; zero-grad entries (not in ok): violations {r['zero_grad_violations']}, "
                              f"max abs {fmt(r.get('zero_grad_max_abs_diff'))}"
                              if "zero_grad_violations" in r else "")
                           + (f" (worst {r['param_worst']})" if r.get("param_worst") else "")
                           + (f"; zero-grad entries (not in ok): max abs {fmt(r['zero_grad_max_abs_diff'])}"
                              if "zero_grad_violations" not in r and "zero_grad_max_abs_diff" in r else ""))
            rows.append([r["step"], r.get("impl"), r.get("device"), r.get("reference"), figures, fmt(r.get("ok"))])
        md += ["## Parity (max relative differences)", ""]
        md += table(["step", "impl", "device", "against", "figures", "ok"], rows) + [""]

    kernels = by("check_kernels")
    if kernels:
        def differences(r):
            keys = [k for k in r if k.endswith(("_rel_diff", "_mismatches", "_fraction"))]
            return ", ".join(f"{k.replace('_rel_diff', '').replace('_', ' ')} {fmt(r[k])}"
                             for k in keys) or r.get("note", "")

        rows = [[r.get("kernel"), r.get("device"), r.get("shape", "–"),
                 differences(r), fmt(r.get("kernel_ms"), ".3f"), fmt(r.get("ops_ms"), ".3f"),
                 fmt(r.get("ok"))]
                for r in kernels]
        md += ["## Our CUDA kernels vs the tensor ops they replace", ""]
        md += table(["kernel", "device", "shape", "differences (relative to the largest entry)", "kernel ms",
                     "tensor ops ms", "ok"], rows)
        md += [""]

    comm = by("bench_comm")
    if comm:
        rows = [[r.get("backend"), r.get("device"), r.get("model"), fmt(r.get("gradient_mb"), ".1f"),
                 r.get("buckets"), fmt(r.get("sync_ms"), ".1f"), fmt(r.get("sync_mb_per_s"), ".0f"),
                 fmt(r.get("raw_bucket_all_reduce_ms"), ".2f"), fmt(r.get("ok"))] for r in comm]
        c = comm[0]
        md += [f"## Communication (world size {c.get('world_size')}, {c.get('bucket_mib')} MiB buckets, "
               f"scale {c.get('scale')}, median of {c.get('reps')})", ""]
        md += table(["backend", "device", "model", "gradient MB", "buckets", "ms per sync", "MB/s",
                     "raw bucket all-reduce ms", "ok"], rows)
        md += ["", f"Note: {c.get('note')}.", ""]

    train = by("bench_train")
    if train:
        base = next((r["samples_per_s"] for r in train if r.get("impl") == "torch"), None)
        rows = []
        for r in train:
            mfu = "–"
            if peak_tflops and r.get("median_step_s"):
                flops = train_step_flops(r["model"], r["batch_size"], r["mean_padded_source_len"],
                                         r["mean_padded_target_len"])
                mfu = f"{100 * flops / r['median_step_s'] / (peak_tflops * 1e12):.1f} %"
            speed = f"{r['samples_per_s'] / base:.2f}×" if base else "–"
            variant = r.get("variant")
            if r.get("batch_size") != train[0].get("batch_size"):
                variant = f"{variant}, batch {r.get('batch_size')}"
            rows.append([variant, r.get("device"), f"{r['samples_per_s']:.1f}", speed,
                         f"{1000 * r['median_step_s']:.0f}",
                         f"{r['mean_padded_source_len']:.0f}/{r['mean_padded_target_len']:.0f}",
                         peak_memory(r), mfu,
                         phases_ms(r.get("phases"), ["data_s", "forward_s", "backward_s", "optimizer_s"]),
                         host_and_tensors(r.get("phases"))])
        b = train[0]
        md += [f"## Training (model {b['model']}, {b.get('parameters', 0) / 1e6:.1f} M parameters, batch "
               f"{b['batch_size']}, source {b['max_source_len']}, target {b['max_target_len']}; median of "
               f"{b['steps']} steps)", ""]
        md += table(["variant", "device", "samples/s", "vs torch", "step ms", "padded S/T", "peak memory GiB",
                     "MFU vs measured peak", "phases ms: data / fwd / bwd / optim",
                     "host-queued ms (tensors): fwd / bwd / optim"], rows) + [""]

    decode = by("bench_decode")
    if decode:
        base = next((r for r in decode if r.get("impl") == "torch"), None)
        rows = []
        for r in decode:
            cmp = r.get("comparison") or {}
            ident = (f"{cmp['nbest_identical']}/{cmp['compared']} (top-1 {cmp['top1_identical']})"
                     if cmp else "–")
            speed = f"{r['examples_per_s'] / base['examples_per_s']:.1f}×" if base else "–"
            p = r.get("phases") or {}
            rows.append([r.get("variant"), r.get("device"), r["examples"], r.get("batch_size"),
                         f"{r['seconds']:.1f}", f"{r['examples_per_s']:.2f}", speed,
                         " / ".join(fmt(p.get(k), ".1f") for k in ("encode_s", "session_step_s", "beam_select_s")),
                         fmt(r.get("median_decode_steps")), ident])
        d = decode[0]
        md += [f"## Decoding (beam {d['beam_size']}, max length {d['max_length']})", ""]
        md += table(["variant", "device", "examples", "batch", "seconds", "examples/s", "vs torch",
                     "phases s: encode / decoder step / beam", "median steps", "n-best identical to torch"],
                    rows) + [""]
        for r in decode:
            cmp = r.get("comparison") or {}
            diffs = cmp.get("first_differences") or []
            if "max_rel_score_diff_where_ids_agree" in cmp:
                md += [f"- {r.get('variant')}: largest relative score difference where the ids agree "
                       f"{fmt(cmp['max_rel_score_diff_where_ids_agree'])}"]
            for d in diffs:
                md += [f"  - example {d['example']}: first difference at rank {d['rank']}, our score "
                       f"{d['our_score']:.6f} vs the reference's {d['their_score']:.6f} there "
                       f"(relative gap {fmt(d['relative_gap'])})"]
        md += [""]

    ops = by("profile_ops")
    if ops:
        md += ["## Training building blocks (ms, median; fwd+bwd includes the forward)", ""]
        rows = []
        for r in ops:
            for o in r.get("ops") or []:
                rows.append([o["op"], o["dtype"], "×".join(str(d) for d in o["shape"]),
                             fmt(o["forward_ms"], ".2f"), fmt(o["forward_backward_ms"], ".2f"),
                             fmt(o["forward_gb_per_s"], ".0f"), fmt(o.get("forward_tflop_per_s"), ".1f")])
        md += table(["op", "dtype", "input shape", "forward", "forward + backward",
                     "forward GB/s (minimum bytes)", "forward TFLOP/s"], rows) + [""]
        keys = ["encoder_forward", "decoder_forward", "head_and_loss_forward", "forward", "backward",
                "forward_backward"]
        md += table(["model", "dtype", "batch", "S/T"] + keys,
                    [[r.get("model"), r.get("dtype"), r.get("batch"), f"{r.get('source_len')}/{r.get('target_len')}"]
                     + [fmt((r.get("phases_ms") or {}).get(k), ".1f") for k in keys] for r in ops]) + [""]

    prof = by("profile_decode")
    if prof:
        md += ["## One decoding step (ms, median)", ""]
        keys = ["step_ranked", "step_full_copy", "decoder_layers", "lm_head", "rank_from_logits",
                "log_softmax_rank_ops", "copy_to_host"]
        md += table(["device", "rows", "cache length", "source length"] + keys,
                    [[r.get("device"), r.get("rows"), r.get("cache_length"), r.get("source_length")]
                     + [fmt((r.get("ms") or {}).get(k), ".2f") for k in keys] for r in prof]) + [""]

    md += ["## Steps", ""]
    md += table(["step", "status", "rc", "seconds", "timeout s"],
                [[s["step"], s["status"], s.get("rc"), fmt(s.get("seconds"), ".0f"), s.get("timeout_s")]
                 for s in steps])
    return "\n".join(md) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--mode", default="gpu")
    args = ap.parse_args()
    steps = []
    if os.path.exists(args.steps):
        with open(args.steps) as f:
            steps = [json.loads(line) for line in f if line.strip()]
    results = load_results(steps)
    md = build(steps, results, args.mode)
    with open(args.json, "w") as f:
        json.dump({"mode": args.mode, "steps": steps, "results": results}, f, indent=1)
    with open(args.md, "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
