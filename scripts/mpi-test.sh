#!/usr/bin/env bash
# MPI test of the communicator and of training under it: builds examples/comm_check with
# `--features mpi`, then
#  1. runs the collective self-check on 2 ranks with mpirun: every collective result is compared
#     with its closed form (non-zero exit on any mismatch);
#  2. trains the tiny parity fixture (c2n_train::comm::parity) for 3 updates on 2 MPI ranks
#     (backend picked from mpirun's environment) and, separately, on one rank with the combined
#     batch; each run saves its final parameters;
#  3. compares the two: fails, naming the worst tensor, if any tensor's relative L2 difference
#     exceeds 1e-5 (the training-parity requirement of docs/distributed.md);
#  and checks that a rank failing while the others wait in a collective ends the job with an
#  error instead of hanging it (MPI_Finalize would wait for them);
#  4. with the ruby data, signals during `train` on 2 ranks: SIGUSR1 to mpirun, then SIGTERM to
#     rank 1 alone; every rank stops after the same update, checkpoint-last is saved, the
#     message shows once, and `--resume` goes on from that update.
#
# Usage: scripts/mpi-test.sh [--bench]      (from any directory; installs Open MPI if missing)
# Env:   C2N_MPI_RANKS (default 2), CARGO_PROFILE (default release), C2N_PARITY_STEPS (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

ranks="${C2N_MPI_RANKS:-2}"
profile="${CARGO_PROFILE:-release}"

# Open MPI + libclang (the mpi crate generates its bindings with bindgen at build time).
if ! command -v mpirun >/dev/null 2>&1 || ! command -v mpicc >/dev/null 2>&1; then
  echo "== installing Open MPI (libopenmpi-dev openmpi-bin libclang-dev) =="
  sudo_cmd=""
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libopenmpi-dev openmpi-bin libclang-dev >/dev/null
fi
mpirun --version | head -1

# Open MPI refuses to run as root unless told otherwise (containers, CI).
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

echo "== cargo build --profile $profile --features mpi --example comm_check =="
cargo build --profile "$profile" --features mpi --example comm_check
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
profile_dir="$profile"; [ "$profile" = dev ] && profile_dir=debug
bin="$target_dir/$profile_dir/examples/comm_check"
log_dir="$(mktemp -d)"
work="$(mktemp -d)"
trap 'rm -rf "$work" "$log_dir"' EXIT

echo "== mpirun -n $ranks comm_check --backend mpi $* =="
# --oversubscribe: more ranks than cores is fine for a correctness check on a small machine.
# timeout: a hung collective must fail the script, not stall CI.
timeout 600 mpirun -n "$ranks" --oversubscribe "$bin" --backend mpi --world-size "$ranks" "$@"

if [ "$ranks" -ge 2 ]; then
  for how in "" --panic; do
    echo "== mpirun -n $ranks comm_check fail-on-rank $how: a failing rank must end the job, not hang =="
    set +e
    timeout 120 mpirun -n "$ranks" --oversubscribe "$bin" fail-on-rank --backend mpi --rank 1 \
      --world-size "$ranks" $how 2>"$log_dir/fail.err"
    rc=$?
    set -e
    tail -n 3 "$log_dir/fail.err"
    if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || ! grep -q "aborting the MPI job" "$log_dir/fail.err"; then
      echo "mpi-test: FAILED (fail-on-rank $how: exit status $rc, 124 = hung until the timeout)" >&2
      exit 1
    fi
    echo "fail-on-rank $how: rank 1 aborted the job (status $rc), as it should"
  done
  # A rank that is alive but joins no collective (a stopped process) must not stall the job:
  # the others' collective watchdog (--timeout-s) ends it well before the rank would come back.
  echo "== mpirun -n $ranks comm_check stall-on-rank: a stalled rank must end the job, not hang =="
  set +e
  start=$(date +%s)
  timeout 120 mpirun -n "$ranks" --oversubscribe "$bin" stall-on-rank --backend mpi --rank 1 \
    --seconds 600 --timeout-s 5 --world-size "$ranks" 2>"$log_dir/stall.err"
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  tail -n 3 "$log_dir/stall.err"
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || ! grep -q "has waited" "$log_dir/stall.err"; then
    echo "mpi-test: FAILED (stall-on-rank: exit status $rc after ${took} s, 124 = hung until the timeout)" >&2
    exit 1
  fi
  echo "stall-on-rank: the waiting rank ended the job after ${took} s (status $rc), as it should"
fi

steps="${C2N_PARITY_STEPS:-3}"
echo "== mpirun -n $ranks comm_check train-parity ($steps updates; backend from the launcher) =="
timeout 600 mpirun -n "$ranks" --oversubscribe "$bin" train-parity --world-size "$ranks" \
  --steps "$steps" --out "$work/ranks.safetensors"
echo "== comm_check train-parity on one rank (the combined batch) =="
timeout 600 "$bin" train-parity --backend single --steps "$steps" --out "$work/one.safetensors"
echo "== comm_check compare ($ranks ranks vs one rank) =="
"$bin" compare "$work/ranks.safetensors" "$work/one.safetensors"

# SIGUSR1 to mpirun, which passes it on to every rank (its SIGINT/SIGTERM it follows with a
# SIGKILL a second later): the ranks stop after the same update, save checkpoint-last and
# exit 1, and --resume goes on from that update. Needs the ruby data (C2N_SHARED or ../shared).
shared="${C2N_SHARED:-../shared}"
if [ "$ranks" -ge 2 ] && [ -f "$shared/data/codesearchnet/ruby/valid.jsonl" ]; then
  echo "== mpirun -n $ranks train, SIGUSR1 to mpirun: every rank stops after one update =="
  cargo build --profile "$profile" --features mpi --example train
  train_bin="$target_dir/$profile_dir/examples/train"
  run_train() {
    exec timeout 300 mpirun -n "$ranks" --oversubscribe "$train_bin" --init small \
      --tokenizer "$shared/data/roberta-base" \
      --train-data "$shared/data/codesearchnet/ruby/valid.jsonl" --train-limit 32 \
      --output-dir "${run_dir:-$work/signal-run}" --batch-size 4 --max-source-len 32 \
      --max-target-len 16 --train-steps 100000 --log-every 1 "$@"
  }
  set +e
  (run_train --quiet 2>"$log_dir/signal.err") &
  launched=$! # timeout, mpirun's parent
  for _ in $(seq 600); do
    [ "$(cat "$work/signal-run/metrics.jsonl" 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.2
  done
  kill -USR1 "$(pgrep -P "$launched" -x mpirun)"
  wait "$launched"
  rc=$?
  set -e
  grep -E "SIGUSR1|training stopped" "$log_dir/signal.err" || true
  stopped_at="$(sed -n 's/.*training stopped after update \([0-9]*\) .*/\1/p' "$log_dir/signal.err")"
  if [ "$rc" -ne 1 ] || [ -z "$stopped_at" ] || [ ! -f "$work/signal-run/checkpoint-last/model.safetensors" ]; then
    echo "mpi-test: FAILED (SIGUSR1: exit status $rc, stopped at '${stopped_at}')" >&2
    tail -n 20 "$log_dir/signal.err" >&2
    exit 1
  fi
  if ! (run_train --quiet --resume --stop-after "$((stopped_at + 2))" 2>"$log_dir/resume.err") \
    || ! grep -q "after $stopped_at of 100000 updates" "$log_dir/resume.err" \
    || [ "$(wc -l <"$work/signal-run/metrics.jsonl")" -ne "$((stopped_at + 2))" ]; then
    echo "mpi-test: FAILED (the resumed run did not go on from update $stopped_at)" >&2
    tail -n 20 "$log_dir/resume.err" >&2
    exit 1
  fi
  echo "SIGUSR1: both ranks stopped after update $stopped_at, and the resumed run went on from there"

  # A signal that reaches rank 1 alone (a launcher or a node signalling one process): both
  # ranks stop after the same update, and rank 0, whose progress shows, says why.
  echo "== mpirun -n $ranks train, SIGTERM to rank 1 alone: both stop, rank 0 says so =="
  set +e
  (run_dir="$work/rank1-run" run_train 2>"$log_dir/rank1.err") &
  launched=$!
  for _ in $(seq 600); do
    [ "$(cat "$work/rank1-run/metrics.jsonl" 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.2
  done
  for pid in $(pgrep -P "$(pgrep -P "$launched" -x mpirun)"); do
    if tr '\0' '\n' <"/proc/$pid/environ" | grep -qx OMPI_COMM_WORLD_RANK=1; then kill -TERM "$pid"; fi
  done
  wait "$launched"
  rc=$?
  set -e
  said="$(grep -c "another rank received a stop signal" "$log_dir/rank1.err")"
  if [ "$rc" -ne 1 ] || [ "$said" -ne 1 ] || ! grep -q "training stopped after update" "$log_dir/rank1.err" \
    || [ ! -f "$work/rank1-run/checkpoint-last/model.safetensors" ]; then
    echo "mpi-test: FAILED (SIGTERM to rank 1: exit status $rc, rank 0 said so $said time(s))" >&2
    tail -n 20 "$log_dir/rank1.err" >&2
    exit 1
  fi
  grep -E "another rank|training stopped" "$log_dir/rank1.err"
else
  echo "SKIP the signal check: no ruby data under $shared (set C2N_SHARED)"
fi
echo "mpi-test: OK ($ranks ranks: collectives, training equal to one rank, a signal to mpirun or to one rank stops every rank)"
