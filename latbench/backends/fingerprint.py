"""What a measurement was taken on: enough to refuse applying a profile to another device."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    physical: set[tuple[str, str]] = set()
    phys_id = "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name":
            info.setdefault("cpu", value)
        elif key == "physical id":
            phys_id = value
        elif key == "core id":
            physical.add((phys_id, value))
        elif key == "flags":
            flags = set(value.split())
            wanted = ("avx2", "avx512f", "avx512_vnni", "amx_tile")
            info.setdefault("cpu_isa", ",".join(f for f in wanted if f in flags))
    if physical:
        info["physical_cores"] = str(len(physical))
    return info


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=1)
def host_fingerprint() -> dict[str, object]:
    """CPU model, core counts, OS and Python: the host part of every fingerprint."""
    info = _cpuinfo()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": info.get("cpu") or platform.processor() or platform.machine(),
        "cpu_isa": info.get("cpu_isa", ""),
        "physical_cores": int(info["physical_cores"]) if "physical_cores" in info else None,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": package_version("numpy"),
    }


def cuda_fingerprint(device: int = 0) -> dict[str, object]:
    """GPU name, memory, compute capability, CUDA and driver versions (via torch)."""
    import torch

    props = torch.cuda.get_device_properties(device)
    out: dict[str, object] = {
        "gpu": props.name,
        "gpu_memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "gpu_multiprocessors": props.multi_processor_count,
        "cuda_runtime": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10).stdout.strip().splitlines()
        out["driver"] = driver[device] if driver else None
    except (OSError, subprocess.SubprocessError, IndexError):
        out["driver"] = None
    return out
