"""The machine a benchmark ran on, for the figures it prints (shared by the benchmark scripts)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpuinfo(key: str) -> str:
    """The first value of ``key`` in /proc/cpuinfo, or ''."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or "unknown CPU"


def cpu_mhz() -> float:
    """The first core's clock as the kernel reports it (0.0 when unknown)."""
    value = _cpuinfo("cpu MHz")
    return float(value) if value else 0.0


def machine() -> str:
    """The GPU's name when CUDA is available, else the CPU's name and core count."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()}, {os.cpu_count()} cores"
