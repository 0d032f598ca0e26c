#!/usr/bin/env python3
"""Environment facts of a device run: GPU, driver, glibc, torch, and which shared libraries the
device binary resolves (``ldd``) under the current ``LD_LIBRARY_PATH``.

    python3 tools/gpu/env_facts.py --bin build/device/device

Prints one JSON line ``{"check": "env", ...}``; ``ok`` is false when a library is not found.
"""

import argparse
import os
import platform
import shutil
import subprocess

from common import emit


def run(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return p.returncode, (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    args = ap.parse_args()
    facts = {"uname": " ".join(platform.uname()), "nproc": os.cpu_count(),
             "glibc": platform.libc_ver()[1] or "unknown",
             "ld_library_path": os.environ.get("LD_LIBRARY_PATH", "")}
    if shutil.which("nvidia-smi"):
        _, facts["nvidia_smi"] = run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                                      "power.limit", "--format=csv,noheader"])
        _, cuda_line = run(["nvidia-smi"])
        facts["nvidia_smi_cuda"] = next((l.strip() for l in cuda_line.splitlines() if "CUDA Version" in l), None)
    else:
        facts["nvidia_smi"] = None
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            facts["gpu"] = p.name
            facts["gpu_multiprocessors"] = p.multi_processor_count
            facts["gpu_capability"] = f"{p.major}.{p.minor}"
            facts["gpu_memory_bytes"] = p.total_memory
    except ImportError as e:
        facts["torch"] = f"not importable: {e}"
    rc, ldd = run(["ldd", args.bin])
    lines = [l.strip() for l in ldd.splitlines()]
    facts["ldd_not_found"] = [l for l in lines if "not found" in l]
    facts["ldd_cuda"] = [l for l in lines if any(k in l for k in ("cuda", "cublas", "curand", "nccl", "cudart"))]
    facts["ldd_rc"] = rc
    emit("env", **facts, ok=rc == 0 and not facts["ldd_not_found"])


if __name__ == "__main__":
    main()
