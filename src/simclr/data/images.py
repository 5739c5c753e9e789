"""Decoding image files of any Pillow mode into 8-bit RGB.

Every image that enters the pipeline goes through :func:`open_rgb`, so the augmentations and the
encoder only ever see ``PIL.Image.Image`` objects in mode ``"RGB"`` with 8 bits per channel.

Conversion rules:

* Transparency (modes ``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La`` and palette or grayscale images with a
  ``transparency`` entry) is alpha-composited over a **white** background, so a fully transparent
  pixel becomes ``(255, 255, 255)`` whatever colour it stored.
* 16-bit integer modes (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) and 32-bit ``I`` are scaled linearly
  from the full 16-bit range 0..65535 to 0..255 (``round(v / 257)``); ``I`` values outside that range are
  clipped first. Nothing is clipped at 255, so 65535 becomes 255 and 32768 becomes 128.
* Floating-point ``F`` images whose finite values all lie in [0, 1] are scaled by 255; otherwise they are
  taken to be on the 0..255 scale and clipped to it. NaN and infinities become 0.
* Every other mode (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGB``) uses Pillow's own
  conversion. Multi-frame files (GIF, TIFF) give their first frame.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from simclr.errors import InputError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)
"""File extensions treated as images (compare lower-cased; see :func:`is_image_file`)."""

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_INT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_BACKGROUND = (255, 255, 255, 255)


class CorruptImageError(InputError):
    """An image file (or byte string) that Pillow cannot identify or fully decode."""


def is_image_file(name: str | Path) -> bool:
    """Tell whether a file name has one of :data:`IMAGE_EXTENSIONS` (case-insensitive).

    Args:
        name: File name or path; only the suffix is looked at.

    Returns:
        True for names such as ``"a.JPG"`` or ``"dir/b.tiff"``.
    """
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


MinSide = int | Callable[[int, int], int]
"""A fixed side, or a function of the file's full (width, height), called before decoding, that gives it."""


def open_rgb(data: bytes | str | Path, *, name: str | None = None, min_side: MinSide = 0) -> Image.Image:
    """Decode an image into an 8-bit RGB ``PIL.Image.Image`` (rules in the module docstring).

    The whole image is decoded here (``Image.load``), so truncated files fail now rather than later in
    a data-loader worker.

    Args:
        data: Encoded image bytes, or the path of an image file.
        name: How to call the image in error messages; defaults to the path, or ``"<bytes>"``.
        min_side: When > 0, a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size (the decoder's DCT
            scaling, several times faster for large photos) as long as its shorter side stays at least twice
            ``min_side``: for callers that shrink the image (or a crop of it, see
            :mod:`simclr.data.crop_views`) to ``min_side`` anyway; the resize that follows still averages two
            or more decoded pixels per output pixel, so the result differs from a full decode by less than
            JPEG's own noise. 0: full size. A callable is called with the full width and height (whatever the
            format) and returns the side.

    Returns:
        A new image in mode ``"RGB"``, detached from any open file.

    Raises:
        CorruptImageError: The data is not a decodable image, or the file cannot be read.
    """
    label = name or (str(data) if isinstance(data, (str, Path)) else "<bytes>")
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        with Image.open(source) as img:
            if callable(min_side):
                min_side = min_side(*img.size)
            if min_side > 0 and img.format == "JPEG":
                w, h = img.size
                factor = min(w, h) // (2 * min_side)  # the decoder picks the largest of 8, 4, 2 not above it
                if factor >= 2:
                    img.draft(None, (-(-w // factor), -(-h // factor)))
            img.load()
            return to_rgb(img)
    except FileNotFoundError as exc:
        raise CorruptImageError(f"image not found: {label}") from exc
    except (Image.UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"cannot decode image {label}: {exc}; remove or replace the file") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(
            f"cannot decode image {label} ({type(exc).__name__}: {exc}); remove or replace the file"
        ) from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB (rules in the module docstring).

    Args:
        img: A loaded Pillow image.

    Returns:
        A new image in mode ``"RGB"`` (a copy when ``img`` is already RGB).
    """
    if img.mode in _INT_MODES:
        return _gray_array_to_rgb(_scale_uint16(np.asarray(img)))
    if img.mode == "F":
        return _gray_array_to_rgb(_scale_float(np.asarray(img)))
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _BACKGROUND)
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _scale_uint16(values: np.ndarray) -> np.ndarray:
    """Map integers on the 0..65535 scale to uint8 0..255 by ``round(v / 257)`` (clipping out-of-range)."""
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def _scale_float(values: np.ndarray) -> np.ndarray:
    """Map floats to uint8: the [0, 1] scale when every finite value fits it, else the 0..255 scale."""
    clean = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if clean.size and clean.min() >= 0.0 and clean.max() <= 1.0:
        clean = clean * 255.0
    return np.clip(np.rint(clean), 0, 255).astype(np.uint8)


def _gray_array_to_rgb(gray: np.ndarray) -> Image.Image:
    """Stack a uint8 [H, W] array into an RGB image."""
    return Image.fromarray(np.repeat(gray[:, :, None], 3, axis=2))
