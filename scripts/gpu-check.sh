#!/usr/bin/env bash
# The one script a GPU session runs: environment facts, parity with the PyTorch reference on
# the GPU, then benchmarks (training, decoding), each step with its own timeout; a failed or
# timed-out step is recorded and the next one runs. The whole run stays inside a wall-time
# budget (default 530 s; the device tool's call limit is 600 s): a step gets at most what is
# left, and steps that no longer fit are recorded as skipped. Results go to $OUT:
#
#   gpu-check.json   every step (status, rc, seconds) and every result line
#   gpu-check.md     the tables (printed last)
#   gpu-check.log    the full output of every step
#
# Usage:
#   scripts/gpu-check.sh                # GPU machine: build/device/device(.xz), build/device/data
#   scripts/gpu-check.sh --cpu-dry-run  # here: the CPU build of the device example
#                                       # (cargo build --example device), small model, tiny sizes
# Options: --budget SECONDS. Environment: OUT (default build/gpu-check), DEVICE_BIN, DEVICE_DATA,
# GPU_CHECK_ONLY (regex of step names to run), GPU_CHECK_DECODE_SUBSET (GPU: examples both
# decoders decode for the n-best comparison, default 64), GPU_CHECK_DECODE_ALL_BATCH (default 256, run 4: 23.2 GB),
# GPU_CHECK_DECODE_ALL_BATCH2 (the larger batch of the *_b2 steps, default 512),
# GPU_CHECK_REPEATS (training timings repeated at the end, default 0),
# GPU_CHECK_BUDGET_S, GPU_CHECK_TIMEOUT_SCALE (dry run). Built by scripts/cuda-build.sh; see docs/gpu.md.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MODE=gpu
BUDGET=${GPU_CHECK_BUDGET_S:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-dry-run) MODE=cpu-dry-run ;;
    --budget) BUDGET=$2; shift ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
# GPU: 530 s inside the device tool's 600 s call limit; the dry run on a busy 2-core CPU is slower.
[ -n "$BUDGET" ] || { [ "$MODE" = gpu ] && BUDGET=530 || BUDGET=1500; }
START=$(date +%s)
RESERVE=15  # seconds kept for the report
OUT_DIR=${OUT:-$ROOT/build/gpu-check}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/c2n-gpu-check.XXXXXX")
LOG=$OUT_DIR/gpu-check.log
: > "$LOG"
STEPS=$WORK/steps.jsonl
: > "$STEPS"
DATA=${DEVICE_DATA:-$ROOT/build/device/data}
TRAIN_FEATURES=$DATA/ruby_valid_train_features.jsonl
TEST_FEATURES=$DATA/ruby_test_features.jsonl
export PYTHONUNBUFFERED=1 RUST_BACKTRACE=0
# GPU_CHECK_ONLY: a regex of step names to run (e.g. 'make_checkpoint|decode_.*'); the others
# are recorded as n/a. Empty: every step.
ONLY=${GPU_CHECK_ONLY:-}

if [ "$MODE" = gpu ]; then
  SCALE=1
  DEV=cuda
  MODEL=codebert
  TRAIN=(--batch-size 32 --warmup 3 --steps 10 --phase-steps 5)
  PEAK=(--n 8192 --dtype bfloat16)
  TRAIN_SMALL=(--batch-size 8 --warmup 3 --steps 10 --phase-steps 5)
  # Bucketed batches differ in cost: more timed steps, samples/s over all of them.
  TRAIN_BUCKETED=(--batch-size 32 --warmup 3 --steps 30 --phase-steps 5 --bucket-window 10)
  PROFILE=(--examples 128 --prefix 48 --reps 5)
  OPS=(--model codebert --batch 32 --reps 5)
  KERNELS=(--rows 8192 --width 768 --reps 10)
  DECODE_SUBSET=${GPU_CHECK_DECODE_SUBSET:-64} DECODE_MAX_LEN=128 DECODE_BATCH=64 DECODE_ALL=0 DECODE_ALL_BATCH=${GPU_CHECK_DECODE_ALL_BATCH:-256} DECODE_ALL_BATCH2=${GPU_CHECK_DECODE_ALL_BATCH2:-512} DECODE_ALL_BUDGET=140 TORCH_DECODE_BUDGET=60
  SHARP_SUBSET=32 SHARP_TORCH_BUDGET=40
  BIN=${DEVICE_BIN:-$ROOT/build/device/device}
  if [ ! -x "$BIN" ] && [ -f "$ROOT/build/device/device.xz" ]; then
    BIN=$WORK/device
    python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],"wb"))' \
      "$ROOT/build/device/device.xz" "$BIN" && chmod +x "$BIN"
  fi
  # The binary links libcudart/libcublas/libcublasLt/libcurand/libnccl dynamically: use the
  # CUDA 13 libraries of torch's wheels (and a system CUDA, if any) — see docs/gpu.md.
  SP=$(python3 -c 'import os,nvidia;print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null || true)
  LIBS=""
  for d in "$SP"/nvidia/cu13/lib "$SP"/nvidia/nccl/lib "$SP"/nvidia/*/lib /usr/local/cuda/lib64; do
    [ -d "$d" ] && case ":$LIBS:" in *":$d:"*) ;; *) LIBS=${LIBS:+$LIBS:}$d ;; esac
  done
  export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
  SCALE=${GPU_CHECK_TIMEOUT_SCALE:-5}  # step timeouts ×5: a busy 2-core CPU runs the reference slowly
  DEV=cpu
  MODEL=small
  TRAIN=(--batch-size 4 --warmup 1 --steps 2 --phase-steps 1)
  PEAK=(--n 256 --dtype float32)
  TRAIN_SMALL=(--batch-size 2 --warmup 1 --steps 2 --phase-steps 1)
  TRAIN_BUCKETED=(--batch-size 4 --warmup 1 --steps 3 --phase-steps 1 --bucket-window 2)
  PROFILE=(--examples 3 --prefix 2 --reps 2)
  OPS=(--model small --batch 2 --source-len 16 --target-len 8 --reps 2)
  KERNELS=(--rows 64 --width 32 --reps 2 --decode-rows 40 --vocab 300 --cache-len 5)
  DECODE_SUBSET=3 DECODE_MAX_LEN=8 DECODE_BATCH=2 DECODE_ALL=6 DECODE_ALL_BATCH=3 DECODE_ALL_BATCH2=6 DECODE_ALL_BUDGET=0 TORCH_DECODE_BUDGET=60
  SHARP_SUBSET=3 SHARP_TORCH_BUDGET=60
  BIN=${DEVICE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/examples/device}
  if [ -z "${DEVICE_BIN:-}" ]; then
    # Always (cargo is quick when nothing changed): a stale binary would dry-run old code.
    echo "building the CPU device example (cargo build --example device)" | tee -a "$LOG"
    cargo build --example device >>"$LOG" 2>&1 || { echo "build failed: see $LOG" >&2; exit 1; }
  fi
fi
echo "gpu-check: mode $MODE, binary $BIN, data $DATA, budget ${BUDGET}s, results in $OUT_DIR" | tee -a "$LOG"

# run_step NAME TIMEOUT_S COMMAND...: runs with min(TIMEOUT_S, budget left), records the outcome.
run_step() {
  local name=$1 limit=$2
  shift 2
  if [ -n "$ONLY" ] && ! [[ "$name" =~ ^($ONLY)$ ]]; then
    not_applicable "$name" "not selected by GPU_CHECK_ONLY"
    return
  fi
  local left=$((BUDGET - ($(date +%s) - START) - RESERVE))
  if [ "$left" -lt 10 ]; then
    echo "=== $name: skipped (budget spent)" | tee -a "$LOG"
    printf '{"step":"%s","status":"skipped","rc":null,"seconds":0,"timeout_s":0,"stdout":null}\n' "$name" >>"$STEPS"
    return
  fi
  limit=$((limit * SCALE))
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $name (timeout ${limit}s): $*" | tee -a "$LOG"
  local t0 rc status secs
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  cat "$WORK/$name.out" >>"$LOG"
  tail -n 60 "$WORK/$name.err" | sed 's/^/  stderr: /' >>"$LOG"
  printf '{"step":"%s","status":"%s","rc":%d,"seconds":%s,"timeout_s":%d,"stdout":"%s"}\n' \
    "$name" "$status" "$rc" "$secs" "$limit" "$WORK/$name.out" >>"$STEPS"
  echo "    -> $status (rc $rc, ${secs}s)" | tee -a "$LOG"
}

# not_applicable NAME REASON: a step that cannot run in this mode (not counted as a failure).
not_applicable() {
  echo "=== $1: n/a ($2)" | tee -a "$LOG"
  printf '{"step":"%s","status":"n/a","rc":null,"seconds":0,"timeout_s":0,"stdout":null,"reason":"%s"}\n' \
    "$1" "$2" >>"$STEPS"
}

# step_status NAME: the recorded status of a step that has run (ok, failed, timeout, …).
step_status() {
  grep -o "\"step\":\"$1\",\"status\":\"[a-z/]*\"" "$STEPS" | tail -n 1 | sed 's/.*"status":"//; s/"$//'
}

# fewer_kernels: the fewer-launch kernels' names, as the binary lists them (`device info`).
fewer_kernels() {
  $PY -c 'import json, sys
for line in open(sys.argv[1]):
    if line.startswith("{"):
        print(" ".join(json.loads(line).get("fewer_launch_kernels", [])))' "$WORK/info.out" 2>/dev/null
}

TORCH_FIX=$WORK/torch-$DEV
CKPT=$WORK/checkpoint-$MODEL
PY=python3

# 1. Environment.
run_step env 30 $PY tools/gpu/env_facts.py --bin "$BIN"
run_step info 60 "$BIN" info --device "$DEV"
# 2. Parity: the reference on this device vs the committed CPU fixtures; ours vs both.
run_step parity_torch 120 $PY tools/gpu/parity_reference.py --device "$DEV" --out "$TORCH_FIX"
run_step parity_model 90 env C2N_CUDA_SYNC_CHECK=1 "$BIN" parity-model --device "$DEV" \
  --reference "committed torch-cpu fixture"
run_step parity_model_vs_torch_device 90 "$BIN" parity-model --device "$DEV" \
  --fixture "$TORCH_FIX/model_fixture.json" --reference "torch-$DEV, this run"
run_step parity_train 60 env C2N_CUDA_SYNC_CHECK=1 "$BIN" parity-train --device "$DEV" \
  --reference "committed torch-cpu fixture"
run_step parity_train_vs_torch_device 60 "$BIN" parity-train --device "$DEV" \
  --fixture-dir "$TORCH_FIX/train_steps" --init crates/c2n-train/tests/data/train_steps/init \
  --reference "torch-$DEV, this run"
# Our CUDA kernels against the tensor ops they replace.
run_step check_kernels 60 "$BIN" check-kernels --device "$DEV" "${KERNELS[@]}"
# 3. Benchmarks, same card, same run.
run_step peak_matmul 60 $PY tools/gpu/peak_matmul.py --device "$DEV" "${PEAK[@]}"
# Gradient exchange at world size 1 (issue 6): host round trip vs NCCL, full-model gradient shapes.
run_step bench_comm_single 45 "$BIN" bench-comm --backend single --model "$MODEL" --device "$DEV"
if [ "$MODE" = gpu ]; then
  run_step bench_comm_nccl 45 "$BIN" bench-comm --backend nccl --model "$MODEL" --device "$DEV"
  # The one-thread-per-GPU launch (ncclCommInitAll, a thread rank, a barrier) at world size 1.
  run_step bench_comm_nccl_threads 45 "$BIN" bench-comm --backend nccl-threads --model "$MODEL" --device "$DEV"
else
  not_applicable bench_comm_nccl "the CPU build has no nccl feature"
  not_applicable bench_comm_nccl_threads "the CPU build has no nccl feature"
fi
run_step train_torch_f32_padded 120 $PY tools/gpu/bench_train.py --device "$DEV" --model "$MODEL" \
  --features "$TRAIN_FEATURES" "${TRAIN[@]}"
run_step train_candle_f32_padded 120 "$BIN" bench-train --device "$DEV" --model "$MODEL" \
  --features "$TRAIN_FEATURES" --precision f32 --padding reference "${TRAIN[@]}"
run_step train_candle_bf16_dynamic 120 "$BIN" bench-train --device "$DEV" --model "$MODEL" \
  --features "$TRAIN_FEATURES" --precision bf16 --padding dynamic --keep-pool "${TRAIN[@]}"
# The best setting with length buckets (--bucket-window 10: mean padded source ≈ 114 tokens
# instead of ≈ 250 at batch 32 on these features), samples/s over 30 steps.
run_step train_candle_bf16_bucketed 120 "$BIN" bench-train --device "$DEV" --model "$MODEL" \
  --features "$TRAIN_FEATURES" --precision bf16 --padding dynamic --keep-pool "${TRAIN_BUCKETED[@]}"
# The fewer-launch kernels (written in the ninth session without a device; on by default since
# run 10 checked them, H200, 2026-11-28; run 11 the first with them on by default): the weight casts, the encoder's stacked query/key/value weights and
# the bf16 weight-gradient casts as one pack kernel each, dropout + residual add + layer norm as
# one kernel, and one AdamW launch per moment chunk. The parity steps above ran with them (and
# waited after each of our kernels, C2N_CUDA_SYNC_CHECK=1, so a kernel that faults names
# itself); here parity without them (C2N_CUDA_FEWER_LAUNCHES=0, the path a failing kernel falls
# back to), then the A/Bs of the defaults above against it.
run_step parity_model_nofewer 90 env C2N_CUDA_FEWER_LAUNCHES=0 "$BIN" \
  parity-model --device "$DEV" --reference "committed torch-cpu fixture"
run_step parity_train_nofewer 60 env C2N_CUDA_FEWER_LAUNCHES=0 "$BIN" \
  parity-train --device "$DEV" --reference "committed torch-cpu fixture"
# A failed parity (the defaults) names no kernel by itself: then (or with GPU_CHECK_BISECT=1)
# three trainer updates against PyTorch with each fewer-launch kernel alone, a few seconds each.
if [ "${GPU_CHECK_BISECT:-0}" = 1 ] || [[ "$(step_status parity_model)" =~ ^(failed|timeout)$ ]] \
   || [[ "$(step_status parity_train)" =~ ^(failed|timeout)$ ]]; then
  for kernel in $(fewer_kernels); do
    ONLY='' run_step "parity_train_fewer_only_$kernel" 30 env C2N_CUDA_FEWER_LAUNCHES="$kernel" \
      C2N_CUDA_SYNC_CHECK=1 "$BIN" parity-train --device "$DEV" --reference "committed torch-cpu fixture"
  done
fi
run_step train_candle_f32_padded_pool_nofewer 120 env C2N_CUDA_FEWER_LAUNCHES=0 "$BIN" bench-train \
  --device "$DEV" --model "$MODEL" --features "$TRAIN_FEATURES" --precision f32 --padding reference \
  --keep-pool "${TRAIN[@]}"
run_step train_candle_bf16_dynamic_nofewer 120 env C2N_CUDA_FEWER_LAUNCHES=0 "$BIN" bench-train \
  --device "$DEV" --model "$MODEL" --features "$TRAIN_FEATURES" --precision bf16 --padding dynamic \
  --keep-pool "${TRAIN[@]}"
run_step train_candle_bf16_bucketed_nofewer 120 env C2N_CUDA_FEWER_LAUNCHES=0 "$BIN" bench-train \
  --device "$DEV" --model "$MODEL" --features "$TRAIN_FEATURES" --precision bf16 --padding dynamic \
  --keep-pool "${TRAIN_BUCKETED[@]}"
# Each kernel's share of the best setting: all fewer-launch kernels but one (a few seconds each
# on run 10's timings); the report sets each against all of them, and each run's losses
# against the run without any (which kernel a bf16 loss difference comes from).
for kernel in $(fewer_kernels); do
  run_step "train_candle_bf16_bucketed_without_$kernel" 120 env C2N_CUDA_FEWER_LAUNCHES="-$kernel" \
    "$BIN" bench-train --device "$DEV" --model "$MODEL" --features "$TRAIN_FEATURES" --precision bf16 \
    --padding dynamic --keep-pool "${TRAIN_BUCKETED[@]}"
done
# bf16 with Candle's autograd over the op graph: the explicit pass's A/B in the best setting.
run_step train_candle_bf16_dynamic_graph 120 "$BIN" bench-train --device "$DEV" --model "$MODEL" \
  --features "$TRAIN_FEATURES" --precision bf16 --padding dynamic --keep-pool --graph-backward \
  "${TRAIN[@]}"
run_step train_candle_tf32_dynamic 120 "$BIN" bench-train --device "$DEV" --model "$MODEL" \
  --features "$TRAIN_FEATURES" --precision tf32 --padding dynamic --keep-pool "${TRAIN[@]}"
# The f32 padded run again with the memory pool kept: how much of the gap is the allocator.
run_step train_candle_f32_padded_pool 120 "$BIN" bench-train --device "$DEV" --model "$MODEL" \
  --features "$TRAIN_FEATURES" --precision f32 --padding reference --keep-pool "${TRAIN[@]}"
# The same with Candle's autograd over the op graph instead of the explicit backward pass
# (the default): what the graph's per-edge zero+add kernels and output copies cost.
run_step train_candle_f32_padded_pool_graph 120 "$BIN" bench-train --device "$DEV" \
  --model "$MODEL" --features "$TRAIN_FEATURES" --precision f32 --padding reference --keep-pool \
  --graph-backward "${TRAIN[@]}"
# The graph path with softmax and LayerNorm as primitive ops (fused_kernels = false): what
# the fused ops with their own backward pass buy, in time and peak memory.
run_step train_candle_f32_padded_pool_primitive 120 "$BIN" bench-train --device "$DEV" \
  --model "$MODEL" --features "$TRAIN_FEATURES" --precision f32 --padding reference --keep-pool \
  --primitive-kernels "${TRAIN[@]}"
# The run without the fewer-launch kernels (which build on these) again with the layer-norm
# backward as ~18 tensor ops instead of our two CUDA kernels (44 layer norms per step): the
# kernels' effect on the step, against train_candle_f32_padded_pool_nofewer.
run_step train_candle_f32_padded_pool_lnops 120 env C2N_CUDA_LN_BACKWARD=0 C2N_CUDA_FEWER_LAUNCHES=0 "$BIN" bench-train \
  --device "$DEV" --model "$MODEL" --features "$TRAIN_FEATURES" --precision f32 --padding reference \
  --keep-pool "${TRAIN[@]}"
# The runs without the fewer-launch kernels (which build on these) again with dropout, the
# attention probabilities, the GELU backward and the bias column sums as tensor ops instead of
# our kernels (counter-based dropout, no stored masks): the training kernels' effect, f32 and
# bf16, against the *_nofewer steps.
run_step train_candle_f32_padded_pool_trainops 120 env C2N_CUDA_TRAIN_KERNELS=0 C2N_CUDA_FEWER_LAUNCHES=0 "$BIN" bench-train \
  --device "$DEV" --model "$MODEL" --features "$TRAIN_FEATURES" --precision f32 --padding reference \
  --keep-pool "${TRAIN[@]}"
run_step train_candle_bf16_dynamic_trainops 120 env C2N_CUDA_TRAIN_KERNELS=0 C2N_CUDA_FEWER_LAUNCHES=0 "$BIN" bench-train \
  --device "$DEV" --model "$MODEL" --features "$TRAIN_FEATURES" --precision bf16 --padding dynamic \
  --keep-pool "${TRAIN[@]}"
# A quarter of the batch: if the step time hardly shrinks, the step is bound by per-op
# overhead (launches, allocation), not by the GPU's arithmetic.
run_step train_candle_bf16_dynamic_b8 120 "$BIN" bench-train --device "$DEV" --model "$MODEL" \
  --features "$TRAIN_FEATURES" --precision bf16 --padding dynamic --keep-pool "${TRAIN_SMALL[@]}"
# The step's building blocks alone and the model's forward/backward phases (where training
# time goes, op by op: effective GB/s and TFLOP/s against the card's).
run_step profile_ops_f32 90 "$BIN" profile-ops --device "$DEV" --dtype f32 "${OPS[@]}"
run_step profile_ops_bf16 90 "$BIN" profile-ops --device "$DEV" --dtype bf16 "${OPS[@]}"
run_step make_checkpoint 60 "$BIN" make-checkpoint --device "$DEV" --model "$MODEL" --out "$CKPT"
run_step decode_torch_reference $((TORCH_DECODE_BUDGET + 60)) $PY tools/gpu/bench_decode.py --device "$DEV" \
  --checkpoint "$CKPT" --sources "$TEST_FEATURES" --examples "$DECODE_SUBSET" --max-length "$DECODE_MAX_LEN" \
  --time-budget "$TORCH_DECODE_BUDGET" --out "$WORK/torch_nbest.json"
# Ours on exactly the examples the reference decoded (it may stop early on its time budget).
DONE=$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["nbest"]))' "$WORK/torch_nbest.json" 2>/dev/null \
  || echo "$DECODE_SUBSET")
COMPARE=()
[ -f "$WORK/torch_nbest.json" ] && COMPARE=(--compare "$WORK/torch_nbest.json")
run_step decode_candle_subset 120 "$BIN" bench-decode --device "$DEV" --checkpoint "$CKPT" \
  --sources "$TEST_FEATURES" --examples "$DONE" --batch-size "$DECODE_BATCH" --max-length "$DECODE_MAX_LEN" \
  --dynamic-padding --keep-pool "${COMPARE[@]}"
run_step decode_candle_all 180 "$BIN" bench-decode --device "$DEV" --checkpoint "$CKPT" \
  --sources "$TEST_FEATURES" --examples "$DECODE_ALL" --batch-size "$DECODE_ALL_BATCH" \
  --max-length "$DECODE_MAX_LEN" --dynamic-padding --keep-pool --time-budget "$DECODE_ALL_BUDGET" \
  --variant "candle batched reference-mode (all)"
# Batches in file order, as before length-sorted batches (run 6's configuration): the A/B of
# decoding longest source first (half the padded source tokens at batch 256 on ruby test).
run_step decode_candle_all_file_order 180 "$BIN" bench-decode --device "$DEV" --checkpoint "$CKPT" \
  --sources "$TEST_FEATURES" --examples "$DECODE_ALL" --batch-size "$DECODE_ALL_BATCH" \
  --max-length "$DECODE_MAX_LEN" --dynamic-padding --file-order --keep-pool \
  --time-budget "$DECODE_ALL_BUDGET" --variant "candle batched reference-mode (all), file order"
# The same with our decoding kernels off (tensor-op ranking, index_select + cat for the cache).
run_step decode_candle_all_ops 180 env C2N_CUDA_DECODE_KERNELS=0 "$BIN" bench-decode --device "$DEV" \
  --checkpoint "$CKPT" --sources "$TEST_FEATURES" --examples "$DECODE_ALL" --batch-size "$DECODE_ALL_BATCH" \
  --max-length "$DECODE_MAX_LEN" --dynamic-padding --keep-pool --time-budget "$DECODE_ALL_BUDGET" \
  --variant "candle batched reference-mode (all), decoding kernels off"
# The dense self-attention cache (reordered and appended at every step) instead of the slotted
# one (kernels/slot_attention.cu: the cache stays put, a slot table follows the beam; the
# default since run 7): n-best against the reference on the subset, then the whole test set.
run_step decode_candle_subset_dense 120 env C2N_CUDA_SLOTTED_CACHE=0 "$BIN" bench-decode \
  --device "$DEV" --checkpoint "$CKPT" --sources "$TEST_FEATURES" --examples "$DONE" \
  --batch-size "$DECODE_BATCH" --max-length "$DECODE_MAX_LEN" --dynamic-padding --keep-pool \
  --variant "candle batched reference-mode, dense cache" "${COMPARE[@]}"
run_step decode_candle_all_dense 180 env C2N_CUDA_SLOTTED_CACHE=0 "$BIN" bench-decode \
  --device "$DEV" --checkpoint "$CKPT" --sources "$TEST_FEATURES" --examples "$DECODE_ALL" \
  --batch-size "$DECODE_ALL_BATCH" --max-length "$DECODE_MAX_LEN" --dynamic-padding --keep-pool \
  --time-budget "$DECODE_ALL_BUDGET" --variant "candle batched reference-mode (all), dense cache"
# The grouped cross-attention kernel (opt-in; 3× slower than the tensor ops alone in run 7).
run_step decode_candle_all_cross_kernel 180 env C2N_CUDA_CROSS_ATTENTION_KERNEL=1 "$BIN" bench-decode \
  --device "$DEV" --checkpoint "$CKPT" --sources "$TEST_FEATURES" --examples "$DECODE_ALL" \
  --batch-size "$DECODE_ALL_BATCH" --max-length "$DECODE_MAX_LEN" --dynamic-padding --keep-pool \
  --time-budget "$DECODE_ALL_BUDGET" \
  --variant "candle batched reference-mode (all), cross-attention kernel"
# More rows per step (run 7: no faster than batch 256 with the slotted cache).
run_step decode_candle_all_b2 180 "$BIN" bench-decode --device "$DEV" --checkpoint "$CKPT" \
  --sources "$TEST_FEATURES" --examples "$DECODE_ALL" --batch-size "$DECODE_ALL_BATCH2" \
  --max-length "$DECODE_MAX_LEN" --dynamic-padding --keep-pool --time-budget "$DECODE_ALL_BUDGET" \
  --variant "candle batched reference-mode (all), batch $DECODE_ALL_BATCH2"
run_step profile_decode 90 "$BIN" profile-decode --device "$DEV" --checkpoint "$CKPT" \
  --sources "$TEST_FEATURES" "${PROFILE[@]}"
run_step profile_decode_dense 90 env C2N_CUDA_SLOTTED_CACHE=0 "$BIN" profile-decode \
  --device "$DEV" --checkpoint "$CKPT" --sources "$TEST_FEATURES" "${PROFILE[@]}"
# Identity of the outputs on a peaked model: random weights make the next-token distribution
# nearly uniform, where candidates tie within float round-off; word embeddings ×50 make it as
# peaked as a trained model's (make-checkpoint --sharpen), so n-best lists can be compared.
rm -rf "$CKPT"
run_step make_checkpoint_sharp 60 "$BIN" make-checkpoint --device "$DEV" --model "$MODEL" --out "$CKPT" \
  --sharpen 50
run_step decode_torch_sharp $((SHARP_TORCH_BUDGET + 60)) $PY tools/gpu/bench_decode.py --device "$DEV" \
  --checkpoint "$CKPT" --sources "$TEST_FEATURES" --examples "$SHARP_SUBSET" --max-length "$DECODE_MAX_LEN" \
  --time-budget "$SHARP_TORCH_BUDGET" --out "$WORK/torch_sharp_nbest.json"
SHARP_DONE=$($PY -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["nbest"]))' \
  "$WORK/torch_sharp_nbest.json" 2>/dev/null || echo "$SHARP_SUBSET")
SHARP_COMPARE=()
[ -f "$WORK/torch_sharp_nbest.json" ] && SHARP_COMPARE=(--compare "$WORK/torch_sharp_nbest.json")
run_step decode_candle_sharp 90 "$BIN" bench-decode --device "$DEV" --checkpoint "$CKPT" \
  --sources "$TEST_FEATURES" --examples "$SHARP_DONE" --batch-size "$DECODE_BATCH" \
  --max-length "$DECODE_MAX_LEN" --dynamic-padding --keep-pool --variant "candle, sharpened ×50" \
  "${SHARP_COMPARE[@]}"
run_step decode_candle_sharp_dense 90 env C2N_CUDA_SLOTTED_CACHE=0 "$BIN" bench-decode \
  --device "$DEV" --checkpoint "$CKPT" --sources "$TEST_FEATURES" --examples "$SHARP_DONE" \
  --batch-size "$DECODE_BATCH" --max-length "$DECODE_MAX_LEN" --dynamic-padding --keep-pool \
  --variant "candle, sharpened ×50, dense cache" "${SHARP_COMPARE[@]}"

# Repeats (GPU_CHECK_REPEATS=N, default 0): the reference, our best setting and the same
# without the fewer-launch kernels again, in turn, N times (≈ 16 + 4 + 4 s each on an H200):
# step times move by ±15 % between runs of one binary on one card (runs 10 and 11), so the
# report's repeat table gives each variant's median over the repeats, and the ratio of medians.
for i in $(seq 1 "${GPU_CHECK_REPEATS:-0}"); do
  ONLY='' run_step "train_torch_f32_padded_rep$i" 120 $PY tools/gpu/bench_train.py --device "$DEV" \
    --model "$MODEL" --features "$TRAIN_FEATURES" "${TRAIN[@]}"
  ONLY='' run_step "train_candle_bf16_bucketed_rep$i" 120 "$BIN" bench-train --device "$DEV" \
    --model "$MODEL" --features "$TRAIN_FEATURES" --precision bf16 --padding dynamic --keep-pool \
    "${TRAIN_BUCKETED[@]}"
  ONLY='' run_step "train_candle_bf16_bucketed_nofewer_rep$i" 120 env C2N_CUDA_FEWER_LAUNCHES=0 \
    "$BIN" bench-train --device "$DEV" --model "$MODEL" --features "$TRAIN_FEATURES" --precision bf16 \
    --padding dynamic --keep-pool "${TRAIN_BUCKETED[@]}"
done

rm -rf "$CKPT"  # 0.7 GB
FAILED=$(grep -v '"status":"ok"' "$STEPS" | grep -c -v '"status":"n/a"')
echo "gpu-check: $FAILED step(s) not ok; $(($(date +%s) - START)) s; work files in $WORK; results in $OUT_DIR" \
  | tee -a "$LOG"
# The table comes last.
$PY tools/gpu/report.py --steps "$STEPS" --json "$OUT_DIR/gpu-check.json" --md "$OUT_DIR/gpu-check.md" \
  --mode "$MODE" 2>>"$LOG"
[ "$FAILED" = 0 ]
