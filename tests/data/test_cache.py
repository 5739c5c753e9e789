"""The decoded-dataset cache: hit on unchanged content, re-decode on changed content, survive damage."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr.data import cache as cache_mod
from simclr.data.cache import content_key, decode_cached
from simclr.data.sources import load_source


def _folder(root: Path) -> Path:
    for cls, colour in (("red", (200, 10, 10)), ("blue", (10, 10, 200))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (20, 12), tuple(c + i for c in colour)).save(root / cls / f"{i}.png")
    (root / "red" / "bad.png").write_bytes(b"not an image")
    return root


def test_second_decode_comes_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = load_source(_folder(tmp_path / "imgs"))
    first = decode_cached(source, 8, tmp_path / "cache", progress=False)
    assert first.images.shape == (6, 3, 8, 8) and len(first.skipped) == 1

    def boom(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_mod, "decode_source", boom)
    second = decode_cached(source, 8, tmp_path / "cache", progress=False)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.paths == first.paths and second.skipped == first.skipped


def test_changed_content_or_size_changes_the_key(tmp_path: Path) -> None:
    root = _folder(tmp_path / "imgs")
    source = load_source(root)
    key = content_key(source, 8)
    assert content_key(source, 16) != key
    Image.new("RGB", (20, 12), (0, 255, 0)).save(root / "blue" / "0.png")  # same name, new pixels
    changed = load_source(root)
    assert content_key(changed, 8) != key
    decoded = decode_cached(changed, 8, tmp_path / "cache", progress=False)
    idx = decoded.paths.index("blue/0.png")
    assert decoded.images[idx, 1].float().mean() > 200  # the new green image, not a stale one


def test_damaged_entry_is_rebuilt(tmp_path: Path) -> None:
    source = load_source("digits", "test")
    good = decode_cached(source, 8, tmp_path, progress=False)
    data = next((tmp_path / "decoded").glob("*.u8"))
    data.write_bytes(data.read_bytes()[:100])  # truncated
    again = decode_cached(source, 8, tmp_path, progress=False)
    assert torch.equal(good.images, again.images)
    assert data.stat().st_size == good.images.numel()


def test_array_sources_are_keyed_by_their_pixels(tmp_path: Path) -> None:
    source = load_source("digits", "test")
    altered = type(source)(source.name, source.paths, source.labels, source.classes,
                           np.where(source.array > 0, 255, 0).astype(np.uint8), None)
    assert content_key(source, 8) != content_key(altered, 8)


def test_worker_processes_decode_the_same_in_the_same_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           mini_archive: Path) -> None:
    import shutil

    from simclr.data import decode as decode_mod
    from simclr.data.decode import decode_source, fit_square

    extracted = load_source(mini_archive, "train").root
    assert extracted is not None
    shutil.copytree(extracted, tmp_path / "mini")  # a copy to damage
    source = load_source(tmp_path / "mini", "train")
    monkeypatch.setattr(decode_mod, "_CHUNK", 64)
    monkeypatch.setattr(decode_mod, "_PARALLEL_MIN", 100)  # the 500 images go to worker processes, 8 chunks
    (tmp_path / "mini" / source.paths[70]).write_bytes(b"not a jpeg")  # a corrupt file in the second chunk
    plain = decode_source(source, 24, progress=False)
    parallel = decode_source(source, 24, progress=False, workers=2)
    assert plain.images.shape == (499, 3, 24, 24) and [p for p, _ in plain.skipped] == [source.paths[70]]
    assert torch.equal(plain.images, parallel.images) and torch.equal(plain.labels, parallel.labels)
    assert plain.paths == parallel.paths and plain.skipped == parallel.skipped
    assert plain.paths[70] == source.paths[71]  # the rest close up behind the skipped image
    expected = fit_square(source.load(71, min_side=24), 24).transpose(2, 0, 1)
    np.testing.assert_array_equal(parallel.images[70].numpy(), expected)


def test_a_dataset_too_large_for_memory_is_refused_before_decoding(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from simclr.data import decode as decode_mod
    from simclr.errors import InputError

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:    1000 kB\n")
    monkeypatch.setattr(decode_mod, "MEMINFO", str(meminfo))
    assert decode_mod.available_memory() == 1000 * 1024
    source = load_source("digits", "test")  # 360 images: 360 x 3 x 32 x 32 bytes = 1.05 MiB > 0.9 x 0.98 MiB
    with pytest.raises(InputError, match=r"360 images of digits decoded at 32x32 need 1.1 MiB of memory, "
                                         r"1.0 MiB is available"):
        decode_cached(source, 32, tmp_path / "cache", progress=False)
    # fits
    assert decode_cached(source, 16, tmp_path / "cache", progress=False).images.shape == (360, 3, 16, 16)
    monkeypatch.setattr(decode_mod, "MEMINFO", str(tmp_path / "none"))
    assert decode_mod.available_memory() is None  # unknown: no check
    assert decode_cached(source, 32, None, progress=False).images.shape == (360, 3, 32, 32)
