"""The images a user asks a trained bundle to run on, as MONAI datalist items."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import DataError
from .folder import build_folder_datalist
from .splits import read_datalist
from .validation import validate_datalist

__all__ = ["evaluation_items", "evaluation_split", "inference_items"]


def inference_items(source: str | Path | Iterable, split: str = "auto", keys: Sequence[str] = ("image",),
                    skip_invalid: bool = False) -> list[dict]:
    """Items to run inference on, each with the ``keys`` it has of ``keys`` (``"image"`` always):

    * a folder: every image below it (recursive, sorted);
    * one image file;
    * a datalist JSON: its ``split`` (``"auto"``: test, else validation, else training); an empty split is an error;
    * a list of paths or of items.

    Every file is checked before anything runs (:func:`~dcl_cstp_ext.data.validation.validate_datalist`): a bad one
    raises :class:`DataError` naming it, or, with ``skip_invalid``, is left out with a warning.
    """
    keys = ("image", *[k for k in keys if k != "image"])
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        return [{"image": it["image"]} for it in build_folder_datalist(source, skip_invalid=skip_invalid)["training"]]
    items = _listed_items(source, split, keys)
    return validate_datalist(items, check_images=True, skip_invalid=skip_invalid)[0]


def _listed_items(source: str | Path | Iterable, split: str, keys: Sequence[str]) -> list[dict]:

    def pick(it: Mapping) -> dict:
        return {k: (str(it[k]) if k == "image" else it[k]) for k in keys if k in it}

    if not isinstance(source, (str, Path)):
        return [pick(it) if isinstance(it, Mapping) else {"image": str(it)} for it in source]
    path = Path(source)
    if path.suffix.lower() == ".json":
        datalist = read_datalist(path)
        if split == "auto":
            split = next((s for s in ("test", "validation", "training") if datalist.get(s)), "test")
        items = datalist.get(split) or []
        if not items:
            raise DataError(f"{path}: split '{split}' is empty")
        return [pick(it) for it in items]
    if path.is_file():
        return [{"image": str(path)}]
    raise DataError(f"{path}: not a folder of images, an image or a datalist JSON")


def evaluation_split(datalist: Mapping[str, Any], split: str = "auto") -> str:
    """The split to evaluate: ``split``, or for ``"auto"`` the test split when it has items (an official test or
    validation-as-test part), else the validation split."""
    if split == "auto":
        return "test" if datalist.get("test") else "validation"
    return split


def evaluation_items(datalist: Mapping[str, Any], split: str = "auto") -> list[dict]:
    """Items of the :func:`evaluation_split` of ``datalist``; raises :class:`DataError` when it is empty."""
    split = evaluation_split(datalist, split)
    items = list(datalist.get(split) or [])
    if not items:
        raise DataError(f"the '{split}' split is empty: nothing to evaluate")
    return items
