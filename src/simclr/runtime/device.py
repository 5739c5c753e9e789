"""Device, precision and memory-format choices, made once per run."""

from __future__ import annotations

import contextlib
import platform
import re
from pathlib import Path
from typing import NamedTuple

import torch

from simclr.errors import InputError


def pick_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; asking for CUDA without one is an ``InputError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", name):
        raise InputError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name} was asked for but no CUDA device is available (use --device cpu)")
    if name.startswith("cuda:") and int(name[5:]) >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def cpuinfo(key: str) -> str:
    """The first value of ``key`` in /proc/cpuinfo (e.g. ``model name``, ``cpu MHz``), or '' where there is
    none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_name() -> str:
    """This CPU's model name (``platform.processor()`` where /proc/cpuinfo has none)."""
    return cpuinfo("model name") or platform.processor() or "unknown CPU"


def cpu_has_fast_bf16() -> bool:
    """True when this CPU has native bf16 matrix instructions (AVX-512 BF16 or AMX)."""
    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, probe, None)
        if fn is not None and fn():
            return True
    return False


class Precision(NamedTuple):
    """The autocast dtype (None = fp32) and whether a gradient scaler is needed (fp16)."""

    dtype: torch.dtype | None
    scaled: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)


def pick_precision(name: str, device: torch.device) -> Precision:
    """``auto``: bf16 on CUDA devices that support it and on CPUs with fast bf16, fp32 elsewhere.

    On CPUs without AVX-512 BF16/AMX (e.g. AVX2-only machines), bf16 autocast is several times slower than
    fp32, which is why ``auto`` checks the instruction set rather than just trying it.
    """
    if name == "fp32":
        return Precision(None, False)
    if name == "fp16":
        if device.type != "cuda":
            raise InputError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return Precision(torch.float16, True)
    if name == "bf16":
        return Precision(torch.bfloat16, False)
    if device.type == "cuda":
        return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16,
                         not torch.cuda.is_bf16_supported())
    return Precision(torch.bfloat16 if cpu_has_fast_bf16() else None, False)
