"""Under torchrun every rank takes a disjoint share of each global batch, reshuffled every epoch."""

import pytest
import torch

from simclr.data.augment_spec import AugmentSpec
from simclr.data.views import MemoryViews, epoch_batches

IDENTITY = AugmentSpec(size=8, crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0, color_p=0, gray_p=0, blur_p=0)


def test_epoch_batches_shard_each_global_batch() -> None:
    whole = epoch_batches(103, 20, torch.Generator().manual_seed(4)).tolist()
    shards = [epoch_batches(103, 20, torch.Generator().manual_seed(4), rank, 4).tolist() for rank in range(4)]
    assert len(whole) == 5 and all(len(s) == 5 for s in shards)
    for step in range(5):
        parts = [shards[rank][step] for rank in range(4)]
        assert all(len(p) == 5 for p in parts)
        # ranks' shares, in rank order, are the global batch
        assert [i for part in parts for i in part] == whole[step]
    used = [i for batch in whole for i in batch]
    assert len(set(used)) == 100  # no image twice in an epoch; 3 dropped


def test_epochs_are_reshuffled() -> None:
    gen = torch.Generator().manual_seed(0)
    assert not torch.equal(epoch_batches(50, 10, gen), epoch_batches(50, 10, gen))


def test_memory_views_ranks_cover_the_global_batch() -> None:
    images = torch.arange(24 * 3 * 8 * 8, dtype=torch.int64).remainder(251).to(torch.uint8).view(24, 3, 8, 8)
    images[:, 0, 0, 0] = torch.arange(24, dtype=torch.uint8)  # image id in one pixel
    whole = [v1 for v1, _ in MemoryViews(images, IDENTITY, 8, seed=1).batches()]
    ranks = [[v1 for v1, _ in MemoryViews(images, IDENTITY, 8, seed=1, rank=r, world_size=2).batches()]
             for r in range(2)]
    assert len(whole) == len(ranks[0]) == len(ranks[1]) == 3
    for step in range(3):
        joined = torch.cat([ranks[0][step], ranks[1][step]])
        torch.testing.assert_close(joined, whole[step])
    ids = {round(float(v[0, 0, 0]) * 255) for batch in ranks[0] + ranks[1] for v in batch}
    assert ids == set(range(24))


def test_batch_must_split_evenly() -> None:
    images = torch.zeros(16, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        MemoryViews(images, IDENTITY, 9, seed=0, rank=0, world_size=2)
