"""What h keeps that z = g(h) loses (the paper's Table 3): predict the applied transformation from frozen
features.

Each probe applies one transformation (or not) to every input image, encodes the result with the frozen
network, and trains a small MLP on h and another on z to recover which transformation was applied. A
large gap between the two accuracies means the projection head discards that information.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from simclr.errors import InputError
from simclr.evaluation.batches import Images, image_batches
from simclr.evaluation.knn import topk_accuracy
from simclr.evaluation.options import TRANSFORMS

NUM_CLASSES = {"rotation": 4, "color_vs_gray": 2, "noise": 2, "sobel": 2}
NOISE_STD = 0.1
IMAGE_STRIDE = 10_000_019
"""Seeds of a probe's images: its seed times this, plus the image's id (a prime above any split's size)."""
_LUMA = (0.299, 0.587, 0.114)

Encode = Callable[[Tensor], tuple[Tensor, Tensor]]


def _gray(images: Tensor) -> Tensor:
    """ITU-R 601-2 luma [B, 1, H, W] of RGB images [B, 3, H, W]."""
    weights = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def _sobel(images: Tensor) -> Tensor:
    """Sobel gradient magnitude of the grayscale image, scaled to [0, 1] per image, as 3 equal channels.

    The separable form (difference, then [1, 2, 1] smoothing) with replicated borders is exactly zero on
    constant regions, so a constant image maps to zeros rather than to normalised rounding noise.
    """
    g = F.pad(_gray(images), (1, 1, 1, 1), mode="replicate")
    dx, dy = g[..., :, 2:] - g[..., :, :-2], g[..., 2:, :] - g[..., :-2, :]
    gx = dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]
    gy = dy[..., :, :-2] + 2 * dy[..., :, 1:-1] + dy[..., :, 2:]
    mag = (gx.square() + gy.square()).sqrt()
    mag = mag / mag.amax(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    return mag.expand(-1, 3, -1, -1).contiguous()


def transform_batch(images: Tensor, name: str, generator: torch.Generator | None = None, *,
                    seeds: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Apply transformation ``name`` to a random subset of images and return the images and targets.

    Args:
        images: float [B, 3, H, W] images in [0, 1], square (H == W).
        name: one of ``TRANSFORMS``. ``rotation``: target k uniform in {0, 1, 2, 3}, image rotated by
            90*k degrees. The others are binary (p = 0.5 each): 0 = original, 1 = grayscale
            (``color_vs_gray``), + Gaussian noise of std 0.1 clamped to [0, 1] (``noise``), or the
            per-image normalised Sobel gradient magnitude (``sobel``).
        generator: the source of all randomness (targets and noise) for the batch; its device is used for
            drawing.
        seeds: instead of ``generator``, int64 [B]: each image's target and noise from a CPU generator of its
            own seed, so that an image is transformed the same whatever batch it is in.

    Returns:
        (transformed images [B, 3, H, W] in [0, 1], int64 targets [B] on the images' device).
    """
    if name not in NUM_CLASSES:
        raise InputError(f"unknown probe transform {name!r}; choose from {', '.join(TRANSFORMS)}")
    if name == "rotation" and images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation needs square images, got {tuple(images.shape[-2:])}")
    if seeds is not None:
        targets, noise = _drawn_per_image(seeds, name, tuple(images.shape[1:]))
    else:
        if generator is None:
            raise ValueError("transform_batch needs a generator or per-image seeds")
        targets, noise = _drawn_for_batch(generator, name, tuple(images.shape))
    targets = targets.to(images.device)
    if name == "rotation":
        out = images
        for k in range(1, 4):
            mask = (targets == k).view(-1, 1, 1, 1)
            out = torch.where(mask, torch.rot90(images, k, dims=(2, 3)), out)
        return out, targets
    if name == "color_vs_gray":
        changed = _gray(images).expand(-1, 3, -1, -1)
    elif name == "noise":
        assert noise is not None
        changed = (images + NOISE_STD * noise.to(images.device, images.dtype)).clamp(0.0, 1.0)
    else:
        changed = _sobel(images)
    return torch.where(targets.bool().view(-1, 1, 1, 1), changed, images), targets


def _drawn_for_batch(generator: torch.Generator, name: str,
                     shape: tuple[int, ...]) -> tuple[Tensor, Tensor | None]:
    """Targets [B] (and the noise [B, 3, H, W] of ``noise``) drawn for a whole batch from one generator."""
    b, dev = shape[0], generator.device
    if name == "rotation":
        return torch.randint(4, (b,), generator=generator, device=dev), None
    targets = (torch.rand(b, generator=generator, device=dev) < 0.5).long()
    return targets, torch.randn(shape, generator=generator, device=dev) if name == "noise" else None


def _drawn_per_image(seeds: Tensor, name: str, shape: tuple[int, ...]) -> tuple[Tensor, Tensor | None]:
    """Targets [B] (and the noise [B, 3, H, W] of ``noise``), each image's from a generator seeded by its
    seed."""
    targets, noises = [], []
    for seed in seeds.tolist():
        gen = torch.Generator().manual_seed(int(seed))
        if name == "rotation":
            targets.append(int(torch.randint(4, (1,), generator=gen)))
            continue
        targets.append(int(torch.rand(1, generator=gen) < 0.5))
        if name == "noise":
            noises.append(torch.randn(shape, generator=gen))
    return torch.tensor(targets, dtype=torch.int64), torch.stack(noises) if noises else None


@dataclass(frozen=True)
class ProbeSpec:
    """The MLP probe: Linear(d, hidden)-ReLU-Linear(hidden, C) trained with Adam on standardised features.

    Attributes:
        hidden: hidden width.
        epochs: passes over the training features.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        batch_size: minibatch size.
        seed: seeds the initialisation, the shuffling and the transformed datasets.
    """

    hidden: int = 512
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    seed: int = 0


def train_mlp(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, num_classes: int,
              spec: ProbeSpec = ProbeSpec()) -> float:
    """Train the MLP probe on [N, D] features and int64 labels; return its test top-1 accuracy.

    Features are standardised with the training mean and std. Deterministic given ``spec.seed``; the
    global RNG state is left untouched.
    """
    x_train, x_test = x_train.float(), x_test.float().to(x_train.device)
    y_train, y_test = y_train.to(x_train.device), y_test.to(x_train.device)
    mean, std = x_train.mean(0), x_train.std(0).nan_to_num(1.0).clamp_min(1e-6)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        mlp = nn.Sequential(nn.Linear(x_train.shape[1], spec.hidden), nn.ReLU(),
                            nn.Linear(spec.hidden, num_classes)).to(x_train.device)
    opt = torch.optim.Adam(mlp.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    gen = torch.Generator().manual_seed(spec.seed)
    with torch.enable_grad():
        for _ in range(spec.epochs):
            for idx in torch.randperm(len(x_train), generator=gen).split(spec.batch_size):
                idx = idx.to(x_train.device)
                loss = F.cross_entropy(mlp(x_train[idx]), y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    with torch.no_grad():
        logits = torch.cat([mlp(x) for x in x_test.split(max(1, spec.batch_size))]) if len(x_test) \
            else torch.zeros(0, num_classes)
    return topk_accuracy(logits, y_test, (1,))["top1"]


@torch.no_grad()
def _encode_transformed(encode: Encode, images: Images, name: str, seed: int, batch_size: int,
                        ids_of: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Transform images batch by batch (each image seeded by ``seed`` and its id: its row, or
    ``ids_of[row]``), encode them; return h, z (float32, CPU) and targets."""
    hs, zs, ys = [], [], []
    for batch, rows in image_batches(images, batch_size, "cpu"):
        ids = rows if ids_of is None else ids_of[rows]
        # per image: any batching, same draws
        x, y = transform_batch(batch, name, seeds=seed * IMAGE_STRIDE + ids)
        h, z = encode(x)
        hs.append(h.detach().float().cpu())
        zs.append(z.detach().float().cpu())
        ys.append(y.cpu())
    if not hs:
        raise InputError("no readable images to probe")
    return torch.cat(hs), torch.cat(zs), torch.cat(ys)


def probe(encode: Encode, train_images: Images, test_images: Images,
          transforms: Sequence[str] = TRANSFORMS, spec: ProbeSpec = ProbeSpec(), batch_size: int = 256,
          progress: bool = False, ids: tuple[Tensor | None, Tensor | None] = (None, None)) -> list[dict]:
    """Predict each transformation from frozen h and from frozen z with an MLP probe.

    Args:
        encode: maps float images [B, 3, H, W] in [0, 1] to (h [B, F], z [B, D]); e.g. a wrapper around
            ``SimCLRNet`` that moves the batch to its device and applies the normalisation it expects.
        train_images: uint8 [N, 3, H, W] images the probes are trained on, or :class:`StreamedImages` (their
            centre crops, read from the files batch by batch for every transform; unreadable ones left out).
        test_images: The images they are evaluated on, the same way.
        transforms: names from ``TRANSFORMS``.
        spec: the MLP probe; ``spec.seed`` also seeds the transformed datasets.
        batch_size: encoding batch size.
        progress: show a progress bar over the transforms.
        ids: int64 ids of the train and test images (default: their rows; a stream's rows are its source's):
            each image's transformation is drawn from ``spec.seed`` and its id alone, so the results do not
            depend on the batch size, nor on which images of a split could be read.

    Returns:
        One row per transform: {"transform", "classes", "h_top1", "z_top1", "chance"}, accuracies as
        fractions; ``chance`` is the majority-class rate of the test targets.
    """
    rows = []
    for i, name in enumerate(tqdm(transforms, desc="probe", disable=not progress)):
        if name not in NUM_CLASSES:
            raise InputError(f"unknown probe transform {name!r}; choose from {', '.join(TRANSFORMS)}")
        classes = NUM_CLASSES[name]
        h_tr, z_tr, y_tr = _encode_transformed(encode, train_images, name, 2 * (1000 * spec.seed + i),
                                               batch_size, ids[0])
        h_te, z_te, y_te = _encode_transformed(encode, test_images, name, 2 * (1000 * spec.seed + i) + 1,
                                               batch_size, ids[1])
        chance = (float(torch.bincount(y_te, minlength=classes).max()) / len(y_te) if len(y_te)
                  else float("nan"))
        rows.append({"transform": name, "classes": classes,
                     "h_top1": train_mlp(h_tr, y_tr, h_te, y_te, classes, spec),
                     "z_top1": train_mlp(z_tr, y_tr, z_te, y_te, classes, spec),
                     "chance": chance})
    return rows


def format_probe(rows: Sequence[dict]) -> str:
    """Markdown table of ``probe`` rows: transform | classes | h | z | chance, accuracies in percent."""
    lines = ["| transform | classes | h | z | chance |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['transform']} | {r['classes']} | {100 * r['h_top1']:.1f}% | "
                     f"{100 * r['z_top1']:.1f}% | {100 * r['chance']:.1f}% |")
    return "\n".join(lines)
