"""segkit.data.sampling: collation, evaluation shards, and the training stream that depends only on the seed
and the step (not on the number of processes, workers or accumulation steps)."""

import pytest
import torch

from segkit.data import VOCDataModule, pad_collate
from segkit.data.sampling import ShardSampler, TrainBatchSampler


def test_pad_collate_pads_with_ignore():
    a = {"image": torch.ones(3, 4, 5), "mask": torch.zeros(4, 5, dtype=torch.long), "name": "a"}
    b = {"image": torch.ones(3, 6, 3), "mask": torch.ones(6, 3, dtype=torch.long), "name": "b"}
    batch = pad_collate([a, b])
    assert batch["image"].shape == (2, 3, 6, 5)
    assert batch["mask"].shape == (2, 6, 5)
    assert (batch["mask"][0, 4:] == 255).all() and (batch["mask"][1, :, 3:] == 255).all()
    assert (batch["image"][0, :, 4:] == 0).all()
    assert batch["size"].tolist() == [[4, 5], [6, 3]]


def _first_batches(root, seed, num_workers, n=3):
    torch.manual_seed(seed)
    dm = VOCDataModule(root=str(root), batch_size=4, crop_size=48, num_workers=num_workers)
    dm.setup("fit")
    return [b["image"] for b, _ in zip(dm.train_dataloader(), range(n))]


def test_same_seed_same_augmentations_whatever_the_workers(tiny_voc):
    a, b, c = _first_batches(tiny_voc, 0, 0), _first_batches(tiny_voc, 0, 2), _first_batches(tiny_voc, 1, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # each image seeded by itself, not by its worker
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def _stream(sampler_kw, steps, world, accumulate, start=0):
    """The global batches (sorted (index, seed) lists) of ``steps`` steps, gathered over all ranks."""
    per_rank = [
        list(TrainBatchSampler(**sampler_kw, rank=r, world_size=world, accumulate=accumulate, start_step=lambda: start))
        for r in range(world)
    ]
    out = []
    for step in range(steps):
        micro = [per_rank[r][step * accumulate + m] for r in range(world) for m in range(accumulate)]
        assert len({len(b) for b in micro}) == 1  # equal micro-batches
        out.append(sorted(x for b in micro for x in b))
    return out


def test_global_batches_do_not_depend_on_devices_or_accumulation():
    kw = dict(length=50, global_batch=8, seed=3)  # 6 steps per epoch, 2 images left out of each epoch
    one = _stream(kw, 6, 1, 1)
    for world, accumulate in [(2, 1), (4, 1), (1, 2), (2, 2), (2, 4)]:
        assert _stream(kw, 6, world, accumulate) == one, (world, accumulate)
    images = [i for batch in one for i, _ in batch]
    assert len(images) == len(set(images)) == 48  # an epoch: no image twice
    assert one != _stream(dict(kw, seed=4), 6, 1, 1)
    # the next epoch is reshuffled, with new augmentation seeds
    next_epoch = _stream(kw, 6, 1, 1, start=6)
    assert [i for i, _ in next_epoch[0]] != [i for i, _ in one[0]]
    assert {s for b in next_epoch for _, s in b}.isdisjoint({s for b in one for _, s in b})


def test_resumed_stream_continues_where_it_stopped_on_any_device_count():
    kw = dict(length=50, global_batch=8, seed=3)
    full = _stream(kw, 6, 1, 1)
    assert _stream(kw, 2, 2, 1, start=4) == full[4:]  # resumed at step 4 of 6, on 2 devices
    assert len(TrainBatchSampler(**kw, world_size=2)) == 6


def test_global_batch_must_divide_over_processes():
    with pytest.raises(ValueError, match="data.batch_size=16 .* 3 process"):
        TrainBatchSampler(100, 16, world_size=3)
    with pytest.raises(ValueError, match="multiple of 6"):
        TrainBatchSampler(100, 16, world_size=2, accumulate=3)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        TrainBatchSampler(10, 16)


def test_shards_cover_every_image_once():
    shards = [list(ShardSampler(11, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))  # nothing padded, nothing dropped
    assert [len(s) for s in shards] == [4, 4, 3]


def test_sampler_describes_the_split_of_the_global_batch():
    sampler = TrainBatchSampler(100, 16, rank=1, world_size=4, accumulate=2)
    assert sampler.micro_batch == 2
    assert sampler.description == "global batch 16 = 4 process(es) x 2 images x 2 accumulation step(s)"
