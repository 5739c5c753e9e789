"""Pretraining diagnostics: alignment and uniformity of z, effective rank of h, a grid of augmented views.

Alignment and uniformity follow Wang & Isola (ICML 2020); the effective rank follows Roy & Vetterli (2007).
The tensor functions return 0-d tensors (no host sync); only :func:`diagnostics` returns Python floats.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from simclr.files import atomic_file


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2) -> torch.Tensor:
    """Mean ``||f(x) - f(y)||_2^alpha`` over positive pairs ``(z1[i], z2[i])`` of l2-normalised rows.

    Args:
        z1: First views' projections, ``[N, D]``.
        z2: Second views' projections, ``[N, D]``.
        alpha: Exponent on the distance (2 in Wang & Isola).

    Returns:
        A 0-d float32 tensor in ``[0, 2**alpha]``; 0 when every pair coincides. Lower is better.
    """
    u, v = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    return (u - v).norm(dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2) -> torch.Tensor:
    """``log mean exp(-t ||u - v||^2)`` over distinct pairs of l2-normalised rows of ``z``.

    Args:
        z: Projections, ``[N, D]`` with ``N >= 2``.
        t: Temperature of the Gaussian potential (2 in Wang & Isola).

    Returns:
        A 0-d float32 tensor in ``[-4t, 0]``; lower means more uniformly spread on the sphere.
    """
    sq = torch.pdist(F.normalize(z.float(), dim=1), p=2).pow(2)
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())


def effective_rank(h: torch.Tensor) -> torch.Tensor:
    """``exp`` of the Shannon entropy of the normalised singular values of the centred features.

    Args:
        h: Features, ``[N, F]``; computed in float64.

    Returns:
        A 0-d float64 tensor in ``[1, min(N, F)]``; 1 for rank-1 (or constant) features.
    """
    x = h.detach().double()
    s = torch.linalg.svdvals(x - x.mean(dim=0, keepdim=True))
    p = s / s.sum().clamp_min(torch.finfo(torch.float64).tiny)
    entropy = -torch.special.xlogy(p, p).sum()
    return entropy.exp().clamp(1.0, float(min(x.shape)))


def collapse_warning(rank: float, dim: int, samples: int | None = None,
                     threshold: float = 0.05) -> str | None:
    """A one-line message when ``rank < max(1, threshold * min(dim, samples))``, else None.

    Args:
        rank: Effective rank of the features (see :func:`effective_rank`).
        dim: Feature dimension ``F``.
        samples: How many feature vectors the rank was measured on (it cannot exceed them; None: ``dim``).
        threshold: Fraction of the largest possible rank below which the representation is deemed collapsed.

    Returns:
        The warning text, or None when the rank is healthy.
    """
    most = min(dim, samples) if samples else dim
    floor = max(1.0, threshold * most)
    if rank < floor:
        of = f"{dim} dims" if most == dim else f"at most {most} (the views measured) of {dim} dims"
        return (f"representation collapse warning: effective rank of h is {rank:.2f}, {of} "
                f"(below {floor:.2f} = {threshold:.0%} of {most})")
    return None


@torch.no_grad()
def diagnostics(h: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, float]:
    """Alignment and uniformity of ``z`` (both views) and effective rank of ``h``.

    Args:
        h: Encoder features of one or both views, ``[N, F]`` or ``[2N, F]``.
        z1: First views' projections, ``[N, D]``.
        z2: Second views' projections, ``[N, D]``.

    Returns:
        ``{"alignment", "uniformity", "effective_rank_h"}`` as Python floats.
    """
    values = torch.stack([alignment(z1, z2).double(), uniformity(torch.cat([z1, z2])).double(),
                          effective_rank(h).to(z1.device)])
    a, u, r = values.tolist()
    return {"alignment": a, "uniformity": u, "effective_rank_h": r}


@torch.no_grad()
def measure(net: torch.nn.Module, probe: tuple[torch.Tensor, torch.Tensor], precision: Any,
            device: torch.device, channels_last: bool) -> tuple[dict[str, float], int]:
    """:func:`diagnostics` of ``net`` on a fixed batch of view pairs (eval mode), and the size of h.

    Args:
        net: a model returning ``.h`` and ``.z`` (``SimCLRNet``); its train/eval mode is restored.
        probe: the two views of the same images, each ``[N, 3, S, S]``.
        precision: the run's :class:`~simclr.runtime.device.Precision` (its autocast).
    """
    was_training = net.training
    net.eval()
    x = torch.cat(probe).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with precision.autocast(device):
        out = net(x)
    n = probe[0].shape[0]
    z = out.z.float()
    values = diagnostics(out.h.float(), z[:n], z[n:])
    net.train(was_training)
    return values, int(out.h.shape[1])


def _to_uint8(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``[B, 3, H, W]`` in [0, 1] to ``[B, H*scale, W*scale, 3]`` uint8 on the CPU (nearest neighbour)."""
    x = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    x = x.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return x.permute(0, 2, 3, 1)


def save_view_grid(v1: torch.Tensor, v2: torch.Tensor, path: str | Path, max_images: int = 16, *,
                   gap: int = 2, min_tile: int = 64) -> Path:
    """Write a PNG of augmented pairs: first views on the top row, second views below, pair ``j`` in column
    ``j``.

    Each ``H x W`` view is upscaled by the integer factor ``k = ceil(min_tile / min(H, W))`` (at least 1) and
    tiles are separated (and framed) by ``gap`` white pixels, so the picture is
    ``(n * W*k + (n + 1) * gap) x (2 * H*k + 3 * gap)`` for ``n = min(B, max_images)`` pairs. The file is
    written atomically (temporary file, then replace) and parent directories are created.

    Args:
        v1: First views, float ``[B, 3, H, W]`` in [0, 1] (clamped), any device.
        v2: Second views, same shape as ``v1``.
        path: Destination ``.png`` path.
        max_images: Most pairs shown.
        gap: Pixels between tiles and around the border.
        min_tile: Minimum tile side in pixels after upscaling.

    Returns:
        The path written.
    """
    if v1.shape != v2.shape or v1.ndim != 4 or v1.shape[1] != 3:
        raise ValueError(f"expected two [B, 3, H, W] tensors of one shape, got {tuple(v1.shape)}, "
                         f"{tuple(v2.shape)}")
    n = min(v1.shape[0], max_images)
    if n < 1:
        raise ValueError("no images to draw")
    h, w = v1.shape[2:]
    k = max(1, math.ceil(min_tile / min(h, w)))
    th, tw = h * k, w * k
    canvas = torch.full((2 * th + 3 * gap, n * tw + (n + 1) * gap, 3), 255, dtype=torch.uint8)
    for row, views in enumerate((v1[:n], v2[:n])):
        top = gap + row * (th + gap)
        for col, tile in enumerate(_to_uint8(views, k)):
            left = gap + col * (tw + gap)
            canvas[top:top + th, left:left + tw] = tile
    image = Image.frombytes("RGB", (canvas.shape[1], canvas.shape[0]), canvas.numpy().tobytes())
    path = Path(path)
    with atomic_file(path) as fh:
        image.save(fh, format="PNG")
    return path
