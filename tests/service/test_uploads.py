"""simclr.service.uploads: uploaded images read within limits, refused from their header before decoding."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageFile

from simclr.errors import InputError
from simclr.service.uploads import (
    CorruptImage,
    NotAnImage,
    TooLarge,
    UploadError,
    check_image,
    open_image,
    read_image,
    supported_formats,
)

from .conftest import jpeg, png_bomb


def test_statuses():
    assert (TooLarge.status, NotAnImage.status, CorruptImage.status) == (413, 415, 422)
    assert issubclass(UploadError, InputError)


def test_an_image_is_read_as_rgb():
    picture = read_image(jpeg((40, 30)), "a.jpg")
    assert picture.mode == "RGB" and picture.size == (40, 30)
    out = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(out, "PNG")
    clear = read_image(out.getvalue(), "clear.png")  # transparency over white, as the network sees images
    assert clear.mode == "RGB" and clear.getpixel((0, 0)) == (255, 255, 255)
    check_image(jpeg(), "b.jpg")
    assert {"JPEG", "PNG", "GIF", "WEBP"} <= set(supported_formats())


def test_bytes_are_limited():
    data = jpeg((64, 64))
    with pytest.raises(TooLarge, match="'a.jpg' is larger than"):
        read_image(data, "a.jpg", max_bytes=len(data) - 1)
    assert read_image(data, "a.jpg", max_bytes=len(data)).size == (64, 64)


def test_pixels_are_counted_from_the_header_before_decoding(monkeypatch):
    def never(self, *args, **kwargs):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    with pytest.raises(TooLarge, match="8000x8000 = 64,000,000 pixels, more than 40,000,000"):
        read_image(png_bomb(8000, 8000), "large.png")
    with pytest.raises(TooLarge, match="too many pixels"):  # past PIL's own limit: its DecompressionBombError
        read_image(png_bomb(20000, 20000), "bomb.png")
    with pytest.raises(TooLarge, match="more than 99"):
        open_image(jpeg((10, 10)), "a.jpg", max_pixels=99)
    assert open_image(jpeg((10, 10)), "a.jpg", max_pixels=100).size == (10, 10)


@pytest.mark.parametrize("data", [b"", b"hello", b"%PDF-1.4\n", b"\xff\xd8",
                                  b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n"])
def test_not_an_image(data):
    with pytest.raises(NotAnImage, match="'x' is not an image"):
        read_image(data, "x")


def test_corrupt_images():
    whole = jpeg((64, 64))
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(CorruptImage, match="'cut.jpg' is a damaged image"):
        read_image(whole[: len(whole) // 2], "cut.jpg")
    noise = io.BytesIO()
    Image.effect_noise((64, 64), 40).save(noise, "PNG")
    with pytest.raises(CorruptImage, match="damaged"):
        read_image(noise.getvalue()[:300], "cut.png")
    with pytest.raises(CorruptImage):
        check_image(whole[:400], "cut.jpg")


def test_names_in_messages_are_one_line():
    with pytest.raises(NotAnImage) as caught:
        read_image(b"x", "two\nlines.jpg")
    assert "\n" not in str(caught.value) and "'two lines.jpg'" in str(caught.value)
