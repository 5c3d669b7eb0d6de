"""Multi-view transforms for self-supervised pre-training: several independent random views of one image."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Randomizable

from ._base import seed_child
from .strong_augment import StrongAugmentd

__all__ = ["MultiViewd", "strong_views_transform"]


class MultiViewd(Randomizable, MapTransform):
    """Apply a random dictionary ``transform`` ``num_views`` times, independently, to the same input.

    View ``i`` of ``keys`` is written under ``view_keys[i]`` (with several keys: ``f"{key}_{view_keys[i]}"``).
    Every other entry of the dictionary is kept; the original ``keys`` are dropped if ``drop_original``.
    The input is never modified in place (each view starts from a shallow copy of the input dictionary).

    ``set_random_state`` seeds the inner transform from this transform's stream, so seeding the
    ``MultiViewd`` (directly, through a ``Compose``, or by MONAI's DataLoader worker seeding) seeds all views.

    Args:
        keys: image key(s) to make views of.
        transform: random dictionary transform acting on ``keys`` (e.g. :class:`StrongAugmentd`).
        num_views: number of views.
        view_keys: ``num_views`` output names; ``None`` (or the default when ``num_views != 3``) gives
            ``("view1", ..., f"view{num_views}")``.
        drop_original: remove the original ``keys`` from the output.
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        transform: Callable[[Mapping[Hashable, Any]], Mapping[Hashable, Any]] | None = None,
        num_views: int = 3,
        view_keys: Sequence[str] | None = ("view1", "view2", "view3"),
        drop_original: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if transform is None:
            raise ValueError("MultiViewd needs a transform.")
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}.")
        if view_keys is None or (len(view_keys) != num_views and tuple(view_keys) == ("view1", "view2", "view3")):
            view_keys = tuple(f"view{i + 1}" for i in range(num_views))
        view_keys = tuple(view_keys)
        if len(view_keys) != num_views or len(set(view_keys)) != num_views:
            raise ValueError(f"view_keys must be {num_views} distinct names, got {view_keys}.")
        self.transform = transform
        self.num_views = int(num_views)
        self.view_keys = view_keys
        self.drop_original = drop_original

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        seed_child(self, self.transform, seed, state)
        return self

    def _out_key(self, key: Hashable, view_key: str) -> Hashable:
        return view_key if len(self.keys) == 1 else f"{key}_{view_key}"

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        present = list(self.key_iterator(d))
        for view_key in self.view_keys:
            out = self.transform(dict(data))
            for key in present:
                d[self._out_key(key, view_key)] = out[key]
        if self.drop_original:
            for key in present:
                d.pop(key)
        return d


def strong_views_transform(
    spatial_size: int | Sequence[int],
    num_views: int = 3,
    keys: KeysCollection = "image",
    view_keys: Sequence[str] | None = None,
    drop_original: bool = True,
    **strong_kwargs: Any,
) -> MultiViewd:
    """The pre-training views: ``num_views`` independent :class:`StrongAugmentd` views of ``keys``.

    Returns ``MultiViewd(keys, StrongAugmentd(keys, spatial_size, **strong_kwargs), num_views, view_keys)``; with
    the defaults an input ``{"image": (C, H, W)}`` becomes ``{"view1", "view2", "view3"}`` each
    ``(C, *spatial_size)`` float32 in ``[0, 1]`` (``"image"`` dropped, other entries such as labels kept).
    Bundle config: ``"$dcl_cstp_ext.transforms.strong_views_transform(256)"``.
    """
    if view_keys is None:
        view_keys = tuple(f"view{i + 1}" for i in range(num_views))
    strong = StrongAugmentd(keys, spatial_size, **strong_kwargs)
    return MultiViewd(keys, strong, num_views=num_views, view_keys=view_keys, drop_original=drop_original)
