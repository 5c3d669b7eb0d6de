"""Kvasir-SEG reader: ``Kvasir-SEG/{images,masks}/<id>.jpg`` with optional official id lists."""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import DataError
from .formats import image_stem
from .layout import as_dir, find_root, list_images, pair_files, stems, subdirs
from .splits import Datalist, resolve_datalist, split_with_official
from .validation import raise_or_skip, validate_datalist

__all__ = ["KVASIR_FOLDER", "build_kvasir_seg_datalist", "find_kvasir_root", "find_split_lists", "read_ids"]

logger = logging.getLogger(__name__)

KVASIR_FOLDER = "Kvasir-SEG"
LIST_FILES = {"training": "train.txt", "validation": "val.txt", "test": "test.txt"}


def _has_pairs(d: Path) -> bool:
    return (d / "images").is_dir() and (d / "masks").is_dir()


def find_kvasir_root(dataset_dir: str | Path) -> Path | None:
    """The folder holding ``images/`` and ``masks/``: a ``Kvasir-SEG`` folder (up to two levels down),
    ``dataset_dir`` itself, or the one folder up to two levels down that holds them under another name (a renamed
    copy). Several such folders are refused (:class:`DataError` naming them): which one is meant is not clear."""
    root = find_root(dataset_dir, lambda d: d.name.lower() == KVASIR_FOLDER.lower() and _has_pairs(d))
    top = as_dir(dataset_dir)
    if root or _has_pairs(top):
        return root or top
    level, paired = subdirs(top), []
    for _ in range(2):
        paired += [d for d in level if _has_pairs(d)]
        level = [s for d in level if not _has_pairs(d) for s in subdirs(d)]
    if len(paired) > 1:
        raise DataError(f"{top}: several folders hold images/ and masks/ ({', '.join(str(p) for p in paired)}); "
                        "point dataset_dir at the one to use")
    return paired[0] if paired else None


def find_split_lists(root: Path, lists_dir: str | Path | None = None) -> dict[str, Path]:
    """Official id lists ``train.txt`` / ``val.txt`` / ``test.txt`` in ``lists_dir``, else inside or beside
    the Kvasir-SEG folder (the first folder holding any of them wins)."""
    for d in [Path(lists_dir)] if lists_dir else [root, root.parent]:
        found = {split: d / name for split, name in LIST_FILES.items() if (d / name).is_file()}
        if found:
            return found
    return {}


def read_ids(path: Path) -> list[str]:
    """Ids of a split list, one a line (blank lines skipped, an image extension dropped)."""
    return [image_stem(line.strip()) for line in path.read_text().splitlines() if line.strip()]


def _assign(by_id: dict[str, dict], lists: dict[str, Path], skip_invalid: bool) -> dict[str, list[dict]]:
    ids = {split: read_ids(p) for split, p in lists.items()}
    seen: dict[str, str] = {}
    problems = []
    for split, split_ids in ids.items():
        for i in split_ids:
            if i in seen and seen[i] != split:
                raise DataError(f"{lists[split]}: id {i} is also listed in {lists[seen[i]]}")
            seen[i] = split
            if i not in by_id:
                problems.append((f"{lists[split]}: {i}", "listed id has no image/mask pair"))
    raise_or_skip(problems, skip_invalid, "Kvasir-SEG split lists")
    pools = {split: [by_id[i] for i in split_ids if i in by_id] for split, split_ids in ids.items()}
    unlisted = [by_id[i] for i in sorted(by_id.keys() - seen.keys())]
    if unlisted:
        rest = next((s for s in ("training", "test") if s not in pools), None)
        if rest is None:
            logger.warning("%d Kvasir-SEG pair(s) not in any split list are ignored", len(unlisted))
        else:
            logger.info("%d Kvasir-SEG pair(s) not in any split list form the %s split", len(unlisted), rest)
            pools[rest] = unlisted
    return pools


def build_kvasir_seg_datalist(
    dataset_dir: str | Path,
    seed: int = 0,
    split_file: str | Path | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    lists_dir: str | Path | None = None,
    official_val_as_test: bool = False,
    check_images: bool = True,
    skip_invalid: bool = False,
) -> Datalist:
    """Datalist of Kvasir-SEG (polyp segmentation); items ``{"image": jpg, "label": mask_jpg}``.

    With official id lists (``train.txt`` / ``val.txt`` / ``test.txt``, see :func:`find_split_lists`), each
    listed split is used as is, pairs listed nowhere form the training split if there is no train list, else
    the test split if there is no test list; missing validation / test splits are split (seeded) out of
    training. ``official_val_as_test`` uses ``val.txt`` (the official 120 ids) as the test split, as in the
    paper (880 train / 120 test). Without lists: a seeded split of all pairs.
    """
    root = find_kvasir_root(dataset_dir)
    if root is None:
        raise DataError(f"{dataset_dir}: no {KVASIR_FOLDER}/{{images,masks}}/ layout found")

    def create() -> Datalist:
        images, masks = stems(list_images(root / "images")), stems(list_images(root / "masks"))
        if not images:
            raise DataError(f"{root / 'images'}: no images found")
        pairs, problems = pair_files(images, masks)
        raise_or_skip(problems, skip_invalid, "Kvasir-SEG")
        by_id = {image_stem(i): {"image": str(i), "label": str(m)} for i, m in pairs}
        lists = find_split_lists(root, lists_dir)
        if official_val_as_test and "validation" in lists and "test" not in lists:
            lists["test"] = lists.pop("validation")
        pools = _assign(by_id, lists, skip_invalid) if lists else {"training": list(by_id.values())}
        pools.setdefault("training", [])
        pools = {split: validate_datalist(items, check_images, skip_invalid)[0] for split, items in pools.items()}
        return split_with_official(pools, seed, val_fraction, test_fraction, stratify=None)

    meta = {"dataset": "kvasir_seg", "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    return resolve_datalist(split_file, root, create, check_images, skip_invalid, None, meta)
