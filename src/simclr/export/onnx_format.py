"""f as an ONNX graph: images [B, 3, S, S] (float in [0, 1]) -> h [B, F], batch norms folded.

torch's ``torch.export``-based exporter (``dynamo=True``, which needs ``onnxscript``) writes it, opset
:data:`OPSET`, with a dynamic batch axis and the weights inside the file; a network it cannot capture falls
back to the TorchScript-based exporter. When ``onnxruntime`` is installed the written graph is run on a few
random images and compared with PyTorch (the result's ``max_abs_diff``).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simclr.errors import InputError, missing_extra, one_line
from simclr.files import atomic_file
from simclr.models.fold import folded_for_inference

OPSET = 18
INPUT, OUTPUT = "images", "h"


def _dynamo(model: nn.Module, x: torch.Tensor) -> bytes:
    program = torch.onnx.export(model, (x,), input_names=[INPUT], output_names=[OUTPUT], opset_version=OPSET,
                                dynamo=True, external_data=False, verbose=False,
                                dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert program is not None
    return bytes(program.model_proto.SerializeToString())


def _torchscript(model: nn.Module, x: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    # the TorchScript exporter writes to a file object too
    torch.onnx.export(model, (x,), buffer, input_names=[INPUT],  # type: ignore[arg-type]
                      output_names=[OUTPUT], opset_version=OPSET, dynamo=False,
                      dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
    return buffer.getvalue()


def onnx_bytes(encoder: nn.Module, image_size: int, metadata: dict[str, str]) -> tuple[bytes, str]:
    """The ONNX model of ``encoder`` (folded for inference) on ``image_size`` images, with ``metadata`` in its
    ``metadata_props``; and which exporter wrote it."""
    try:
        import onnx
    except ImportError:
        raise missing_extra("--format onnx", "onnx") from None
    model = folded_for_inference(encoder).float()
    x = torch.rand(2, 3, image_size, image_size)
    with warnings.catch_warnings():  # the exporters' notes on deprecations and torch.export's internals
        warnings.simplefilter("ignore")
        try:
            data, exporter = _dynamo(model, x), "torch.export (dynamo)"
        except Exception:  # noqa: BLE001 - a graph torch.export cannot capture: the older exporter may
            try:
                data, exporter = _torchscript(model, x), "TorchScript"
            except Exception as exc:  # noqa: BLE001 - either exporter's failure, in one line
                raise InputError(f"--format onnx: torch cannot export this network ({type(exc).__name__}: "
                                 f"{one_line(exc)[:200]}); use --format safetensors") from None
    proto = onnx.load_from_string(data)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString(), exporter


def check_onnx(data: bytes, encoder: nn.Module, image_size: int) -> float | None:
    """The largest absolute difference between onnxruntime's h and PyTorch's on 3 random images (None without
    onnxruntime)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    x = torch.rand(3, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    theirs = torch.from_numpy(session.run(None, {INPUT: x.numpy()})[0])
    with torch.no_grad():
        ours = encoder.eval()(x).float()
    return float((theirs - ours).abs().max())


def write_onnx(encoder: nn.Module, image_size: int, out: Path, metadata: dict[str, str]) -> dict[str, Any]:
    """Write f's ONNX model to ``out`` atomically; returns what the result reports of it."""
    data, exporter = onnx_bytes(encoder, image_size, metadata)
    with atomic_file(out) as fh:
        fh.write(data)
    load = (f"import onnxruntime; s = onnxruntime.InferenceSession({str(out)!r}); "
            f"h = s.run(None, {{{INPUT!r}: images}})[0]  "
            f"# images: float32 [B, 3, {image_size}, {image_size}] in [0, 1]")
    return {"exporter": exporter, "opset": OPSET, "input": f"{INPUT} [batch, 3, {image_size}, {image_size}]",
            "output": f"{OUTPUT} [batch, features]", "max_abs_diff": check_onnx(data, encoder, image_size),
            "load": load}
