"""Seeded (stratified) splits and their JSON record on disk (the MONAI datalist convention)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError
from .layout import list_images
from .validation import validate_datalist

__all__ = [
    "PATH_KEYS",
    "SPLITS",
    "Datalist",
    "count_image_files",
    "read_datalist",
    "resolve_datalist",
    "split_items",
    "split_with_official",
    "subsample_labels",
    "write_datalist",
]

logger = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
PATH_KEYS = ("image", "label")  # item keys whose string values are file paths
Datalist = dict[str, Any]  # split name -> list of item dicts, plus optional "class_names": list[str]


def _sort_key(item: Mapping[str, Any]) -> str:
    return str(item["image"])


def _allocate(available: np.ndarray, wanted: float) -> np.ndarray:
    """Integer counts per class summing to ``round(wanted)``, proportional to ``available`` (largest remainder)."""
    total = min(int(np.floor(wanted + 0.5)), int(available.sum()))
    if total == 0:
        return np.zeros_like(available)
    exact = available * total / available.sum()
    counts = np.floor(exact).astype(int)
    order = sorted(range(len(available)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - counts.sum()]:
        counts[i] += 1
    return np.minimum(counts, available)


def split_items(
    items: Sequence[Mapping[str, Any]],
    fractions: Mapping[str, float],
    seed: int = 0,
    stratify: str | None = "label",
) -> dict[str, list[dict[str, Any]]]:
    """Split ``items`` at random, reproducibly, into ``"training"`` plus one part per ``fractions`` entry.

    Items are sorted by image path first, so the result does not depend on file-system listing order.
    Each part gets ``round(n * fraction)`` items; with ``stratify`` (an item key, e.g. ``"label"``) they are
    shared among the classes in proportion to class size (largest remainder). The rest is training.
    Every part comes back sorted by image path.
    """
    if any(f < 0 for f in fractions.values()) or sum(fractions.values()) >= 1.0:
        raise ValueError(f"split fractions must be >= 0 and sum to < 1, got {dict(fractions)}")
    groups: dict[Any, list[dict[str, Any]]] = {}
    for it in sorted(items, key=_sort_key):
        groups.setdefault(it[stratify] if stratify else None, []).append(dict(it))
    keys = sorted(groups, key=str)
    left = np.array([len(groups[k]) for k in keys])
    counts = {}
    for name, frac in fractions.items():
        counts[name] = _allocate(left, len(items) * frac)
        left = left - counts[name]
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict[str, Any]]] = {"training": [], **{name: [] for name in fractions}}
    for c, key in enumerate(keys):
        group = groups[key]
        perm = rng.permutation(len(group))
        start = 0
        for name in fractions:
            n = int(counts[name][c])
            out[name] += [group[i] for i in perm[start : start + n]]
            start += n
        out["training"] += [group[i] for i in perm[start:]]
    return {name: sorted(part, key=_sort_key) for name, part in out.items()}


def split_with_official(
    pools: Mapping[str, Sequence[Mapping[str, Any]]],
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    stratify: str | None = "label",
) -> dict[str, list[dict[str, Any]]]:
    """Keep the official ``"validation"`` / ``"test"`` pools of a release when present and split what is
    missing out of ``pools["training"]`` with :func:`split_items` (seeded, stratified)."""
    fractions = {name: f for name, f in (("validation", val_fraction), ("test", test_fraction)) if name not in pools}
    out = split_items(pools["training"], {k: f for k, f in fractions.items() if f > 0}, seed, stratify)
    for name in ("validation", "test"):
        if name in pools:
            out[name] = sorted((dict(it) for it in pools[name]), key=_sort_key)
        out.setdefault(name, [])
    return out


def _map_paths(datalist: Mapping[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in datalist.items():
        if isinstance(value, list) and all(isinstance(it, Mapping) for it in value):
            value = [{k: fn(v) if k in PATH_KEYS and isinstance(v, str) else v for k, v in it.items()} for it in value]
        out[name] = value
    return out


def write_datalist(
    path: str | Path, splits: Mapping[str, Any], base_dir: str | Path | None = None, meta: Mapping | None = None
) -> Path:
    """Write a datalist (``{"training": [...], "validation": [...], ...}``) as JSON, atomically.

    With ``base_dir``, paths under it are stored relative to it (POSIX style), so that the file stays valid
    when the data moves; ``meta`` (seed, fractions, ...) is recorded under ``"meta"`` for the reader.
    """
    path = Path(path)
    data = dict(splits)
    if base_dir is not None:
        base = Path(base_dir).resolve()

        def rel(p: str) -> str:
            try:
                return Path(p).resolve().relative_to(base).as_posix()
            except ValueError:
                return p

        data = _map_paths(data, rel)
        meta = {"base_dir": str(base), **(meta or {})}
    if meta:
        data["meta"] = dict(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
    return path


def read_datalist(path: str | Path, base_dir: str | Path | None = None) -> Datalist:
    """Read a datalist JSON written by :func:`write_datalist`; relative paths are resolved against
    ``base_dir`` (default: the ``meta.base_dir`` recorded in the file, else the file's folder).
    The ``"meta"`` record is not returned."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read datalist JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: a datalist must be a JSON object of splits")
    meta = data.pop("meta", {}) or {}
    base = Path(base_dir or meta.get("base_dir") or path.parent)
    return _map_paths(data, lambda p: p if os.path.isabs(p) else str(base / p))


def count_image_files(root: str | Path) -> int:
    """How many image files (masks included) lie under ``root`` (:func:`~dcl_cstp_ext.data.layout.list_images`):
    what a split was made from, recorded in its file to notice a data folder that changed since."""
    return len(list_images(Path(root), recursive=True))


def _warn_if_data_changed(split_file: Path, root: Path, datalist: Datalist) -> None:
    recorded = (json.loads(split_file.read_text()).get("meta") or {}).get("image_files")
    now = count_image_files(root) if recorded is not None else None
    if recorded is None or now == recorded:
        return
    items = sum(len(datalist.get(name, [])) for name in SPLITS)
    change = f"{now - recorded} more" if now > recorded else f"{recorded - now} fewer"
    logger.warning(
        f"{root} holds {now} image files now and held {recorded} when the split file {split_file} was written: "
        f"reusing that split ({items} items), so the {change} files are not taken into account. To split afresh, "
        "delete the split file or give another split_file (a pipeline run: a new --out)."
    )


def resolve_datalist(
    split_file: str | Path | None,
    root: Path,
    create: Callable[[], Datalist],
    check_images: bool = True,
    skip_invalid: bool = False,
    class_names: Sequence[str] | None = None,
    meta: Mapping | None = None,
) -> Datalist:
    """Reuse ``split_file`` when it exists (re-checking that its files are still there and readable, and warning
    when ``root`` holds another number of image files than when it was written), else ``create()`` the datalist and,
    when ``split_file`` is given, write it there (with that number: ``meta.image_files``)."""
    if split_file is None or not Path(split_file).is_file():
        datalist = create()
        for name in SPLITS:
            datalist.setdefault(name, [])
        if split_file is not None:
            meta = {**(meta or {}), "image_files": count_image_files(root)}
            write_datalist(split_file, datalist, base_dir=root, meta=meta)
            logger.info("wrote split file %s", split_file)
        return datalist
    datalist = read_datalist(split_file, base_dir=root)
    stored = datalist.get("class_names")
    if class_names is not None and stored is not None and list(stored) != list(class_names):
        raise DataError(
            f"{split_file}: class names {stored} differ from the requested {list(class_names)}; "
            "delete the split file or choose another one"
        )
    for name in SPLITS:
        try:
            datalist[name], _ = validate_datalist(datalist.get(name, []), check_images, skip_invalid)
        except DataError as exc:
            raise DataError(f"split file {split_file}, split '{name}': {exc}", exc.problems) from exc
    logger.info("reusing split file %s", split_file)
    _warn_if_data_changed(Path(split_file), Path(root), datalist)
    return datalist


def subsample_labels(datalist: Mapping[str, Any], fraction: float = 1.0, seed: int = 0) -> Datalist:
    """Keep ``fraction`` of the ``"training"`` items (the low-label regime: e.g. 10% of the labels), seeded and
    stratified by class for classification items; validation and test are untouched. ``fraction=1`` returns the
    datalist unchanged. At least one training item per class is kept."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    out = dict(datalist)
    if fraction == 1.0:
        return out
    train = list(datalist["training"])
    if not train:
        raise DataError("no training items to subsample")
    stratify = "label" if isinstance(train[0].get("label"), (int, np.integer)) else None
    parts = split_items(train, {"dropped": 1.0 - fraction}, seed=seed, stratify=stratify)
    kept = parts["training"]
    if stratify:  # a class whose share rounded to zero keeps one item
        present = {it["label"] for it in kept}
        for it in parts["dropped"]:
            if it["label"] not in present:
                kept.append(it)
                present.add(it["label"])
    if not kept:
        kept = parts["dropped"][:1]
    out["training"] = sorted(kept, key=_sort_key)
    logger.info("label fraction %.3g: %d of %d training items kept", fraction, len(out["training"]), len(train))
    return out
