#!/usr/bin/env bash
# MPI smoke test of the communicator: builds examples/comm_check with `--features mpi` and runs it on
# 2 ranks with mpirun; comm_check compares every collective result with its closed form and exits
# non-zero on any mismatch, so this script fails if MPI all-reduce/broadcast/gather are wrong.
#
# Usage: scripts/mpi-test.sh [--bench]      (from any directory; installs Open MPI if missing)
# Env:   C2N_MPI_RANKS (default 2), CARGO_PROFILE (default release)
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

echo "== mpirun -n $ranks comm_check --backend mpi $* =="
# --oversubscribe: more ranks than cores is fine for a correctness check on a small machine.
# timeout: a hung collective must fail the script, not stall CI.
timeout 600 mpirun -n "$ranks" --oversubscribe "$bin" --backend mpi --world-size "$ranks" "$@"
echo "mpi-test: OK ($ranks ranks)"
