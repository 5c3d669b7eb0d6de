"""Class names of a classification data set: from its datalist, or from a bundle's metadata ``channel_def``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import DataError

__all__ = ["channel_def_names", "class_names_of"]


def channel_def_names(channel_def: Mapping[str, str]) -> list[str]:
    """Class names in channel order from a metadata ``channel_def`` (``{"0": "COVID", ...}``)."""
    return [str(channel_def[k]) for k in sorted(channel_def, key=int)]


def class_names_of(datalist: Mapping[str, Any]) -> list[str]:
    """The class names of a labelled classification datalist (``build_datalist(...)["class_names"]``)."""
    names = datalist.get("class_names")
    if not names:
        raise DataError("the data set is not a labelled classification set (its datalist has no class_names); "
                        "expected the COVID-19 Radiography or pediatric chest X-ray layout")
    return list(names)
