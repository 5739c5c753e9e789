"""Reading uploaded images safely: pure functions, no web framework.

An upload is refused before it costs memory: its bytes are counted against ``max_bytes`` (default 20 MiB a
file) and its pixels against ``max_pixels`` (default 40 megapixels) from the image's header, before anything
is decoded, so a decompression bomb (a 20000x20000 PNG of a few KB) never allocates its pixels. Only common
photo formats are opened (not, e.g., EPS, whose decoding runs Ghostscript). Each refusal is an
:class:`UploadError` carrying the HTTP status that answers it: 413 too large (:class:`TooLarge`), 415 not an
image (:class:`NotAnImage`), 422 an image whose header reads but whose pixels do not decode, e.g. a truncated
JPEG (:class:`CorruptImage`).
"""

from __future__ import annotations

import functools
import io
from typing import ClassVar

from PIL import Image

from simclr.data.images import to_rgb
from simclr.errors import InputError

DEFAULT_MAX_BYTES = 20 * 2**20
DEFAULT_MAX_PIXELS = 40_000_000
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "PPM", "AVIF")
"""The formats an upload may be in (those of them this Pillow reads): photos and the common raster formats."""


class UploadError(InputError):
    """An uploaded file that is refused; ``status`` is the HTTP status that answers it."""

    status: ClassVar[int] = 400


class TooLarge(UploadError):
    """More bytes or pixels than the server accepts."""

    status = 413


class NotAnImage(UploadError):
    """Not an image in a format the server reads."""

    status = 415


class CorruptImage(UploadError):
    """An image whose header reads but whose pixels do not decode (a truncated or damaged file)."""

    status = 422


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB"


def check_bytes(size: int, max_bytes: int, name: str = "upload") -> None:
    """:class:`TooLarge` when ``size`` bytes are more than ``max_bytes``."""
    if size > max_bytes:
        raise TooLarge(f"{name} is larger than {_mib(max_bytes)} ({size:,} bytes)")


def _describe(name: str) -> str:
    name = " ".join(str(name).split())[:200] or "upload"
    return repr(name)


def open_image(data: bytes, name: str = "upload", *, max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The image of ``data`` opened lazily (its header read, no pixels decoded), checked against the limits;
    raises :class:`TooLarge`, :class:`NotAnImage` or :class:`CorruptImage`. ``name`` (the file's name as
    uploaded) only names it in messages."""
    what = _describe(name)
    check_bytes(len(data), max_bytes, what)
    try:
        image = Image.open(io.BytesIO(data), formats=supported_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # the warning: if an error
        raise TooLarge(f"{what} has too many pixels: {_one_line(exc)}") from None
    except Image.UnidentifiedImageError:
        raise NotAnImage(f"{what} is not an image (accepted: {', '.join(supported_formats())})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # a recognised header that does not parse
        raise CorruptImage(f"{what} is a damaged image: {_one_line(exc)}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImage(f"{what} is a damaged image: its size is {width}x{height}")
    if width * height > max_pixels:
        raise TooLarge(f"{what} has {width}x{height} = {width * height:,} pixels, more than {max_pixels:,}")
    return image


def read_image(data: bytes, name: str = "upload", *, max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The uploaded ``data`` decoded into an 8-bit RGB image (as :func:`simclr.data.images.to_rgb` makes every
    image the network sees), once the limits hold (see :func:`open_image`); a multi-frame file gives its
    first frame."""
    image = open_image(data, name, max_bytes=max_bytes, max_pixels=max_pixels)
    try:
        with image:
            image.load()
            return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(f"{_describe(name)} decodes to too many pixels ({_one_line(exc)})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise CorruptImage(f"{_describe(name)} is a damaged image: {_one_line(exc)}") from None


def check_image(data: bytes, name: str = "upload", *, max_bytes: int = DEFAULT_MAX_BYTES,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raise what :func:`read_image` raises for ``data``, keeping nothing: for uploads stored as they are."""
    read_image(data, name, max_bytes=max_bytes, max_pixels=max_pixels).close()


@functools.cache
def supported_formats() -> list[str]:
    """The formats of :data:`FORMATS` this Pillow reads."""
    Image.init()
    return [f for f in FORMATS if f in Image.OPEN]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__
