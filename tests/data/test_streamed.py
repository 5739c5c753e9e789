"""Labelled images streamed from their files batch by batch (fine-tuning and the augmented linear protocol at
scale)."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from simclr.data.decode import decode_source
from simclr.data.sources import load_source
from simclr.data.streamed import StreamedImages


def _folder(root: Path, sizes: list[tuple[int, int]], corrupt: bool = False) -> Path:
    """Two classes of smooth random RGB images of the given (width, height), PNG; and a corrupt JPEG in
    class b."""
    rng = np.random.default_rng(0)
    for k, (w, h) in enumerate(sizes):
        folder = root / ("a" if k % 2 == 0 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        coarse.resize((w, h), Image.Resampling.BILINEAR).save(folder / f"{k:03d}.png")
    if corrupt:
        (root / "b" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


SIZES = [(40, 30), (24, 24), (64, 48), (30, 50), (24, 24), (33, 27), (48, 48)]


def test_centre_crops_match_the_in_memory_decode(tmp_path: Path) -> None:
    source = load_source(str(_folder(tmp_path, SIZES)), "all")
    for crop in (1.0, 0.875):
        decoded = decode_source(source, 16, progress=False, crop=crop)
        stream = StreamedImages(source, 16, crop, workers=0)
        xs, rows = zip(*stream.all(3))
        assert [len(r) for r in rows] == [3, 3, 1]
        np.testing.assert_array_equal(torch.cat(rows).numpy(), np.arange(len(SIZES)))
        streamed = torch.cat(xs)
        assert streamed.shape == (len(SIZES), 3, 16, 16) and streamed.dtype == torch.float32
        assert torch.equal((streamed * 255).round().to(torch.uint8), decoded.images)  # the very same pixels
        torch.testing.assert_close(stream.labels, torch.as_tensor(source.labels))


def test_training_crops_are_seeded_per_image_whatever_the_worker(tmp_path: Path) -> None:
    source = load_source(str(_folder(tmp_path, SIZES)), "all")
    order = [torch.tensor([5, 0, 3]), torch.tensor([6, 1]), torch.tensor([2, 4])]

    def run(workers: int, epoch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        stream = StreamedImages(source, 16, workers=workers)
        xs, rows = zip(*stream.batches(order, crop_scale=(0.08, 1.0), seed=seed, epoch=epoch))
        return torch.cat(xs), torch.cat(rows)

    x, rows = run(0, 0)
    np.testing.assert_array_equal(rows.numpy(), [5, 0, 3, 6, 1, 2, 4])  # in the order asked for
    assert x.shape == (7, 3, 16, 16) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    torch.testing.assert_close(run(2, 0)[0], x, rtol=0, atol=0)  # two worker processes: the same crops
    assert not torch.equal(run(0, 1)[0], x)  # another epoch: other crops
    assert not torch.equal(run(0, 0, seed=2)[0], x)
    centre = torch.cat([b for b, _ in StreamedImages(source, 16, workers=0).batches(order)])
    assert not torch.equal(centre, x)


def test_a_whole_crop_is_the_full_image_resized_or_mirrored(tmp_path: Path) -> None:
    """With the crop area fixed at 1 a square file's random crop is the whole file: resized (or mirrored), not
    a square cut out of a smaller copy. Both flips occur."""
    square = [(24, 24), (48, 48)] * 6
    source = load_source(str(_folder(tmp_path, square)), "all")
    stream = StreamedImages(source, 16, workers=0)
    x, _ = zip(*stream.batches([torch.arange(len(square))], crop_scale=(1.0, 1.0), seed=0))
    whole = torch.cat([b for b, _ in stream.all(len(square))])
    flips = []
    for view, ref in zip(x[0], whole):
        same, mirrored = (view - ref).abs().max(), (view - ref.flip(-1)).abs().max()
        assert min(same, mirrored) < 2 / 255
        flips.append(bool(mirrored < same))
    assert 0 < sum(flips) < len(flips)


def test_unreadable_files_are_left_out_and_listed(tmp_path: Path) -> None:
    source = load_source(str(_folder(tmp_path, SIZES[:3], corrupt=True)), "all")
    bad = source.paths.index("b/bad.jpg")
    stream = StreamedImages(source, 16, workers=0)
    batches = list(stream.batches([torch.tensor([bad]), torch.arange(len(source))], crop_scale=(0.5, 1.0)))
    assert len(batches) == 1  # a batch of nothing but unreadable files is not given
    x, rows = batches[0]
    assert bad not in rows.tolist() and len(x) == len(rows) == len(source) - 1
    assert list(stream.skipped) == ["b/bad.jpg"]
