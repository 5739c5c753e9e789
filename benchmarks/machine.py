"""The machine a benchmark ran on, for the figures it prints (shared by the benchmark scripts)."""

from __future__ import annotations

import os

from simclr.runtime.device import cpu_name, cpuinfo

__all__ = ["cpu_mhz", "cpu_name", "machine"]


def cpu_mhz() -> float:
    """The first core's clock as the kernel reports it (0.0 when unknown)."""
    value = cpuinfo("cpu MHz")
    return float(value) if value else 0.0


def machine() -> str:
    """The GPU's name when CUDA is available, else the CPU's name and core count."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()}, {os.cpu_count()} cores"
