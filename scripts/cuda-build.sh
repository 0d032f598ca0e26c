#!/usr/bin/env bash
# Build the ONE device binary (examples/device.rs, every GPU check as a subcommand) with
# `--features cuda,nccl`, strip it, pack it, and prepare the small data folder a device run
# carries. Everything lands in build/device/ (git-ignored):
#
#   build/device/device.xz     the stripped release binary, xz-compressed (the device copy of
#                              the repository may carry 64 MiB in all; the binary is ≈ 41 MB
#                              raw, mostly PTX text, which compresses well); gpu-check.sh unpacks it
#   build/device/data/         ruby valid/test features (device prepare-data; needs ../shared)
#
# Usage: scripts/cuda-build.sh [--keep-raw] [--no-data]
#
# CUDA toolkit, first found wins:
#   1. $CUDA_ROOT (or $CUDA_HOME / $CUDA_PATH) with bin/nvcc;
#   2. nvcc on PATH;
#   3. /usr/local/cuda/bin/nvcc;
#   4. a pip-wheel CUDA 13.0 root made by ../shared/tools/cuda13-build-env.sh, looked for in
#      $C2N_CUDA13_DIR, build/cuda13, /work/cuda13;
#   5. none: ../shared/tools/cuda13-build-env.sh build/cuda13 assembles one (pip, a few minutes).
# The GPU's compute capability: $CUDA_COMPUTE_CAP, else nvidia-smi, else 90 (H100/H200 → sm_90a).
# The binary needs a driver at least as new as the toolkit (CUDA 13.0 toolkit ↔ r580 driver).
#
# Environment: CARGO_TARGET_DIR (default build/cuda-target: a separate target dir, so the
# shared one is not locked for the ≈ 6–10 min first build on 2 cores).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
KEEP_RAW=0
DATA=1
for arg in "$@"; do
  case "$arg" in
    --keep-raw) KEEP_RAW=1 ;;
    --no-data) DATA=0 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done
OUT_DIR=$ROOT/build/device
SHARED=${C2N_SHARED:-$ROOT/../shared}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/build/cuda-target}
NODEV_STUB=""

use_root() { # a CUDA root with bin/nvcc
  export CUDA_ROOT=$1 CUDA_HOME=$1 CUDA_PATH=$1
  export PATH=$1/bin:$PATH
}

find_toolkit() {
  local r
  for r in "${CUDA_ROOT:-}" "${CUDA_HOME:-}" "${CUDA_PATH:-}"; do
    if [ -n "$r" ] && [ -x "$r/bin/nvcc" ]; then use_root "$r"; echo "toolkit: \$CUDA_ROOT $r"; return; fi
  done
  if command -v nvcc >/dev/null; then
    use_root "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")"
    echo "toolkit: nvcc on PATH ($CUDA_ROOT)"; return
  fi
  if [ -x /usr/local/cuda/bin/nvcc ]; then use_root /usr/local/cuda; echo "toolkit: /usr/local/cuda"; return; fi
  for r in "${C2N_CUDA13_DIR:-}" "$ROOT/build/cuda13" /work/cuda13; do
    if [ -n "$r" ] && [ -f "$r/env.sh" ]; then
      # shellcheck disable=SC1091
      source "$r/env.sh"; NODEV_STUB=$r/nodev; echo "toolkit: pip-wheel CUDA root $r"; return
    fi
  done
  local helper=$SHARED/tools/cuda13-build-env.sh
  if [ ! -x "$helper" ] && [ ! -f "$helper" ]; then
    echo "no CUDA toolkit found and no $helper to assemble one: install CUDA 13.0 or set CUDA_ROOT" >&2
    exit 1
  fi
  echo "toolkit: none found; assembling a CUDA 13.0 root from pip wheels in build/cuda13"
  cargo fetch >/dev/null  # the stub libcuda needs cudarc's sources
  bash "$helper" "$ROOT/build/cuda13"
  # shellcheck disable=SC1091
  source "$ROOT/build/cuda13/env.sh"; NODEV_STUB=$ROOT/build/cuda13/nodev
}

find_toolkit
nvcc --version | tail -2
case "$(nvcc --version | grep -o 'release [0-9]*\.[0-9]*')" in
  "release 13.0") ;;
  *) echo "warning: not a CUDA 13.0 nvcc: the binary needs a driver that supports this toolkit's PTX" >&2 ;;
esac
if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.' || true)
  export CUDA_COMPUTE_CAP=${cap:-90}
fi
echo "compute capability: $CUDA_COMPUTE_CAP; target dir: $CARGO_TARGET_DIR"

cargo build --release --features cuda,nccl --example device
BIN=$CARGO_TARGET_DIR/release/examples/device

# Our kernels' PTX through ptxas for this GPU: an error here would otherwise surface only when
# the driver JIT-compiles the kernel on the device. Prints registers, shared memory and spills.
if command -v ptxas >/dev/null; then
  for ptx in $(ls -t "$CARGO_TARGET_DIR"/release/build/c2n-{model,train}-*/out/*.ptx 2>/dev/null \
               | awk -F/ '!seen[$NF]++'); do
    # The architecture the PTX was written for (cudaforge makes 90 into sm_90a, Hopper's own).
    arch=$(awk '$1 == ".target" { sub(/,.*/, "", $2); print $2; exit }' "$ptx")
    usage=$(ptxas -arch="${arch:-sm_$CUDA_COMPUTE_CAP}" -v "$ptx" -o /dev/null 2>&1) \
      || { echo "ptxas rejects $ptx:" >&2; echo "$usage" >&2; exit 1; }
    echo "ptxas $(basename "$ptx") ($arch): $(echo "$usage" | grep -o 'Used [0-9]* registers.*' | sort -u | paste -sd';')"
    # Some kernels run 1024-thread blocks (the layer-norm ones at width ≥ 1024, the params
    # passes always), which leaves 64 registers a thread: more fails the launch on the device.
    heavy=$(echo "$usage" | awk '/Compiling entry function/ { split($0, q, "'"'"'"); f = q[2] }
                                 match($0, /Used [0-9]+ registers/) {
                                   r = substr($0, RSTART + 5, RLENGTH - 15); if (r + 0 > 64) print f " " r }')
    [ -z "$heavy" ] || { echo "kernels above 64 registers (1024-thread launches fail): $heavy" >&2; exit 1; }
  done
else
  echo "warning: no ptxas: the kernels' PTX is not checked for sm_$CUDA_COMPUTE_CAP" >&2
fi
mkdir -p "$OUT_DIR"
strip -o "$OUT_DIR/device" "$BIN"
echo "stripped binary: $(du -h "$OUT_DIR/device" | cut -f1)"
ldd "$OUT_DIR/device" | grep -E 'cuda|cublas|curand|nccl|not found' || true

if [ "$DATA" = 1 ]; then
  if [ -d "$SHARED/data/codesearchnet/ruby" ]; then
    # The CUDA binary runs CPU code without a GPU; without a driver, the stub libcuda lets it start.
    LDP=${LD_LIBRARY_PATH:-}
    if ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1' && [ -n "$NODEV_STUB" ]; then
      LDP=$NODEV_STUB:$CUDA_ROOT/lib${LDP:+:$LDP}
    fi
    LD_LIBRARY_PATH=$LDP "$OUT_DIR/device" prepare-data --shared "$SHARED" --out "$OUT_DIR/data"
    LD_LIBRARY_PATH=$LDP "$OUT_DIR/device" info --device cpu
  else
    echo "warning: $SHARED/data absent: build/device/data not prepared" >&2
  fi
fi

xz -T0 -6 -f -k "$OUT_DIR/device"
[ "$KEEP_RAW" = 1 ] || rm -f "$OUT_DIR/device"
du -sh "$OUT_DIR"/* | sed 's/^/  /'
# What a device run carries: the repository's tracked and untracked-not-ignored files plus
# build/device, 64 MiB in all.
tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
carried=$(du -sb "$OUT_DIR" | cut -f1)
total=$((tree + carried))
echo "device run carries $total bytes: repository $tree + build/device $carried (limit $((64 << 20)))"
if [ "$total" -gt $((64 << 20)) ]; then
  echo "error: over the 64 MiB a device run may carry (a raw build/device/device left by --keep-raw?)" >&2
  exit 1
fi
