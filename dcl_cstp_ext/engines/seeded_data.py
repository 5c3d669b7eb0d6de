"""Reproducible, resumable data order and augmentation.

:class:`EpochSeededSampler` derives the shuffle *and* one augmentation seed per item from ``(seed, epoch)``;
:class:`SeededAugmentDataset` re-seeds its random transform with that seed before augmenting the item. The
views an image gets therefore depend only on ``(seed, epoch, position)``, not on worker count, process history
or an interruption: a resumed run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from ..data import make_cached_dataset

__all__ = ["EpochSeededSampler", "SeededAugmentDataset", "seeded_cached_dataset"]


class EpochSeededSampler(DistributedSampler):
    """Yields ``(index, item_seed)`` pairs; shuffled per epoch; split across DDP ranks like DistributedSampler.

    Being a ``DistributedSampler``, MONAI's workflows call :meth:`set_epoch` at every epoch start. After a resume
    in the middle of an epoch, :meth:`skip_next` makes the next pass start after the samples already seen.
    Without torch.distributed it behaves as a single replica.
    """

    def __init__(
        self,
        dataset: Sequence,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if distributed else 1)
        rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self._skip = 0

    def skip_next(self, num_samples: int) -> None:
        """Skip the first ``num_samples`` of this rank in the next pass only (resume mid-epoch)."""
        self._skip = int(num_samples)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        n = len(self.dataset)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        seeds = torch.randint(0, 2**31 - 1, (n,), generator=g)
        order, seeds = order.tolist(), seeds.tolist()
        if self.drop_last:
            order, seeds = order[: self.total_size], seeds[: self.total_size]
        else:
            pad = self.total_size - n
            order += (order * math.ceil(pad / n))[:pad] if pad > 0 else []
            seeds += (seeds * math.ceil(pad / n))[:pad] if pad > 0 else []
        pairs = list(zip(order, seeds))[self.rank : self.total_size : self.num_replicas]
        skip, self._skip = self._skip, 0
        return iter(pairs[skip:])

    def __len__(self) -> int:
        return self.num_samples


class SeededAugmentDataset(Dataset):
    """Applies a random ``transform`` to ``base[index]`` after seeding it with the sampler's item seed.

    ``base`` is typically a MONAI ``CacheDataset`` of the deterministic part (decode, resize), so only the
    augmentation runs per epoch. Plain integer indices work too (the transform is then not re-seeded). A dictionary
    output also gets ``index_key`` (default ``"sample_index"``): the item's index in ``base``, with which a memory bank
    tells a query's own image from the others (``None`` adds nothing).
    """

    def __init__(self, base: Sequence, transform: Callable, index_key: str | None = "sample_index") -> None:
        self.base = base
        self.transform = transform
        self.index_key = index_key

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int | tuple[int, int]):
        idx, seed = index if isinstance(index, tuple) else (index, None)
        item = self.base[idx]
        if seed is not None and hasattr(self.transform, "set_random_state"):
            self.transform.set_random_state(seed=seed)
        out = self.transform(item)
        if self.index_key is not None and isinstance(out, dict):
            out = {**out, self.index_key: int(idx)}
        return out


def seeded_cached_dataset(
    data: Sequence[Mapping[str, Any]],
    transform: Any,
    augment: Any,
    num_workers: int | None = None,
    cache_dir: str | None = None,
) -> SeededAugmentDataset:
    """The training set: ``transform`` (deterministic: decode, resize) cached once by
    :func:`~dcl_cstp_ext.data.make_cached_dataset`, then ``augment`` re-seeded per item by the
    :class:`EpochSeededSampler` (exact resume). One config component with the model zoo's
    ``data`` / ``transform`` arguments, so that ``train#dataset#data`` can be overridden (MONAI Label)."""
    return SeededAugmentDataset(make_cached_dataset(data, transform, cache_dir=cache_dir, num_workers=num_workers),
                                augment)

