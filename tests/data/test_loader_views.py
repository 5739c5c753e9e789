"""The file path's views (LoaderViews): each image's augmentation has its own seed, whichever worker or rank
draws it, so ranks never share random numbers and a resumed epoch replays the same views."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr.data.augment_spec import AugmentSpec
from simclr.data.sources import load_source
from simclr.data.views import LoaderViews, image_seed

SPEC = AugmentSpec(size=12, crop_scale=(0.2, 1.0), color_strength=1.0, blur_p=0.5)


@pytest.fixture(scope="module")
def copies(tmp_path_factory) -> Path:
    """Sixteen identical files: any difference between their views is the augmentation's."""
    root = tmp_path_factory.mktemp("copies")
    pixels = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    for i in range(16):
        Image.fromarray(pixels).save(root / f"{i:02d}.png")
    return root


def _epoch(views: LoaderViews, start: int = 0) -> list[torch.Tensor]:
    return [torch.cat([v1, v2]) for v1, v2 in views.batches(start)]


def test_ranks_draw_their_own_random_numbers(copies: Path) -> None:
    source = load_source(str(copies), "all")
    ranks = [_epoch(LoaderViews(source, SPEC, 8, seed=3, workers=0, rank=r, world_size=2)) for r in range(2)]
    for a, b in zip(*ranks):  # the same positions of the ranks' local batches, of identical images
        assert a.shape == b.shape and not torch.equal(a, b)


def test_a_resumed_epoch_replays_the_same_views_whatever_the_workers(copies: Path) -> None:
    source = load_source(str(copies), "all")
    whole = _epoch(LoaderViews(source, SPEC, 4, seed=5, workers=2))
    assert len(whole) == 4 and not torch.equal(whole[0], whole[1])
    # batches move to other workers
    resumed = _epoch(LoaderViews(source, SPEC, 4, seed=5, workers=2), start=1)
    assert all(torch.equal(a, b) for a, b in zip(whole[1:], resumed, strict=True))
    one_process = _epoch(LoaderViews(source, SPEC, 4, seed=5, workers=0))
    assert all(torch.equal(a, b) for a, b in zip(whole, one_process, strict=True))


def test_the_callers_generator_is_untouched_and_epochs_differ(copies: Path) -> None:
    views = LoaderViews(load_source(str(copies), "all"), SPEC, 8, seed=1, workers=0)
    torch.manual_seed(11)
    before = torch.get_rng_state()
    first = _epoch(views)
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.equal(first[0], _epoch(views)[0])  # the next epoch: other views
    seeds = {image_seed(1, e, i) for e in range(3) for i in range(1000)}
    assert len(seeds) == 3000 and all(0 <= s < 2**64 for s in seeds)


def test_the_probe_is_the_same_images_and_views_whatever_its_size(copies: Path) -> None:
    """A run without diagnostics draws only views.png's pairs: the same pictures as the diagnostics' larger
    probe."""
    views = LoaderViews(load_source(str(copies), "all"), SPEC, 8, seed=2, workers=0)
    small, large = views.probe(4), views.probe(12)
    assert small[0].shape[0] == 4 and large[0].shape[0] == 12
    assert torch.equal(small[0], large[0][:4]) and torch.equal(small[1], large[1][:4])
    assert not torch.equal(small[0], small[1])
    assert not torch.equal(small[0], _epoch(views)[0][:4])  # apart from the training stream
