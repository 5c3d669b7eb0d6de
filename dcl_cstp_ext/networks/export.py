"""One export format for every trained network of the project: ``{"model": state_dict, "meta": {...}}``.

``meta`` is plain data (numbers, strings, lists, tensors) saying what the weights are (backbone, channels, image
size, class names, scale factor, noise schedule, epoch...), so a reader can check them before use. One writer
(:func:`save_export` and, for MONAI's ``CheckpointSaver``, :class:`ExportMeta`), one reader (:func:`read_export`,
:func:`read_export_meta`); every read is ``torch.load(weights_only=True)``. MONAI's ``CheckpointLoader`` with
``load_dict={"model": net}`` and ``monai.bundle.load(..., key_in_ckpt="model")`` read the weights of the same file.

Earlier files still read: a bare state dict (``meta`` empty), ``{"model", "info"}`` (the classifier's, ``meta`` =
``info``) and ``{"model", **meta}`` (the generative stages').

A release stores the weights as the model zoo does, a bare state dict that every MONAI tool loads as it is
(``monai.bundle.load``, ``ckpt_export``, ``CheckpointLoader``), with the ``meta`` beside it as JSON,
``<name>.meta.json`` (:func:`meta_sidecar`, :func:`split_for_release`); the readers here take the ``meta`` of a bare
file from that sidecar.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..data.errors import DataError

__all__ = ["ExportMeta", "atomic_save", "check_against_training", "meta_sidecar", "read_export", "read_export_meta",
           "remove_stale_temporaries", "save_export", "split_export", "split_for_release", "trained_settings"]

logger = logging.getLogger(__name__)

#: the name ``tempfile.mkstemp(prefix=".<name>.")`` gives a temporary of ``<name>.pt`` in :func:`atomic_save`
_TEMPORARY = re.compile(r"\.(.+\.pt)\.[a-z0-9_]{8}")


def atomic_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: a crash never leaves a
    half-written checkpoint at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that an :func:`atomic_save` killed mid-write left in ``folder``
    (``.<name>.pt.XXXXXXXX``, ``mkstemp``'s pattern); returns them. Call it only where no other process is saving."""
    folder = Path(folder)
    stale = [p for p in folder.glob(".*.*") if p.is_file() and _TEMPORARY.fullmatch(p.name)] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def save_export(path: str | os.PathLike, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any] | None = None
                ) -> None:
    """Write ``{"model": state, "meta": meta}`` to ``path`` atomically (a crash leaves the old file or none)."""
    atomic_save({"model": dict(state), "meta": dict(meta or {})}, path)


def split_export(obj: object, where: str = "checkpoint") -> tuple[dict, dict]:
    """``(state_dict, meta)`` of a loaded export, or of one of the earlier forms (see the module docstring)."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"{where}: expected a dict, got {type(obj).__name__}")
    if not isinstance(obj.get("model"), Mapping):  # a bare state dict
        return dict(obj), {}
    if isinstance(obj.get("meta"), Mapping):
        return dict(obj["model"]), dict(obj["meta"])
    if isinstance(obj.get("info"), Mapping):
        return dict(obj["model"]), dict(obj["info"])
    return dict(obj["model"]), {k: v for k, v in obj.items() if k != "model"}


def _load(path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False) -> object:
    """``torch.load(weights_only=True)`` of ``path``; a file that is not a checkpoint, or that holds anything but
    tensors and plain data, is refused with a ``DataError`` naming it (never with torch's advice to load it
    unsafely)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    if path.stat().st_size == 0:
        raise DataError.in_file(path, "empty file, not a PyTorch checkpoint")
    try:
        if mmap:
            try:
                return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            except RuntimeError:  # not a zip-format file: no mmap
                pass
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found:
            raise DataError.in_file(path, f"holds {found.group(1)} besides tensors and plain data; loading it could run "
                                          "code, so it is refused (save the weights as a state dict instead)") from None
        raise DataError.in_file(path, "not a PyTorch checkpoint (or a damaged one)") from None
    except (EOFError, RuntimeError, ValueError) as err:
        raise DataError.in_file(path, f"not a PyTorch checkpoint (or a damaged one): {type(err).__name__}") from None


def meta_sidecar(path: str | os.PathLike) -> Path:
    """Where a release keeps the ``meta`` of the bare weights file ``path``: ``model.pt`` -> ``model.meta.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".meta.json")


def _sidecar_meta(path: str | os.PathLike, meta: dict) -> dict:
    side = meta_sidecar(path)
    if meta or not side.is_file():
        return meta
    try:
        found = json.loads(side.read_text())
    except (OSError, ValueError) as err:
        raise DataError.in_file(side, f"not the JSON meta of {Path(path).name}: {err}") from None
    if not isinstance(found, dict):
        raise DataError.in_file(side, f"not the JSON meta of {Path(path).name}: a {type(found).__name__}")
    return found


def read_export(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, dict]:
    """``(state_dict, meta)`` of the export at ``path``; GPU-saved weights load on a CPU. A bare state dict takes its
    ``meta`` from :func:`meta_sidecar` when there is one."""
    state, meta = split_export(_load(path, map_location), str(path))
    return state, _sidecar_meta(path, meta)


def read_export_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` of the export at ``path`` (the weights are memory-mapped, not read)."""
    return _sidecar_meta(path, split_export(_load(path, mmap=True), str(path))[1])


def _plain(value: Any) -> Any:
    """``value`` with tensors as (nested) lists and tuples as lists: JSON data."""
    if torch.is_tensor(value):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def split_for_release(path: str | os.PathLike) -> tuple[bytes, bytes | None]:
    """The release form of the export at ``path``: the bytes of its bare state dict (``torch.save``, the same
    bytes for the same weights) and of its ``meta`` as JSON (None when it has none)."""
    import io

    state, meta = split_export(_load(path), str(path))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    text = json.dumps(_plain(meta), indent=1, sort_keys=True) + "\n" if meta else None
    return buffer.getvalue(), text.encode() if text else None


def trained_settings(path: str | os.PathLike | None, defaults: Mapping[str, Any]) -> dict:
    """``defaults`` updated with the values the export at ``path`` was trained with (its ``meta``, for the keys of
    ``defaults``), when the file exists: an inference config reads the backbone, channels and image size from the
    model it runs instead of assuming them."""
    out = dict(defaults)
    if path and Path(path).is_file():
        meta = read_export_meta(path)
        out.update({k: meta[k] for k in defaults if k in meta})
    return out


def check_against_training(path: str | os.PathLike | None, advice: str | None = None, **asked: Any) -> None:
    """Compare the settings an inference or evaluation run ``asked`` for with those the export at ``path`` was
    trained with: another architecture (``backbone``, channels) is refused (its weights would not load), another
    ``image_size`` is warned about (the model runs, but on images of a size it has not seen). Nothing when the file
    is missing. ``advice``: what the refusal tells the user to do (default: the inference configs', which read
    the settings from the model)."""
    from ..settings import SettingsError

    if not (path and Path(path).is_file()):
        return
    meta = read_export_meta(path)
    differ = {k: (meta[k], v) for k, v in asked.items() if k in meta and meta[k] != v}
    size = differ.pop("image_size", None)
    if differ:
        raise SettingsError(f"{path} was trained with " + ", ".join(f"{k} {t!r}" for k, (t, _) in differ.items())
                            + "; this run asks for " + ", ".join(f"{k} {a!r}" for k, (_, a) in differ.items())
                            + ": " + (advice or "leave them unset (they are read from the model) or pass the model's"))
    if size:
        logger.warning(
            f"{path} was trained at image_size {size[0]} but runs at {size[1]}: its results may be worse than "
            f"validated; leave image_size unset to use the model's ({size[0]})"
        )


class ExportMeta:
    """The ``meta`` entry for MONAI's ``CheckpointSaver``: ``save_dict={"model": net, "meta": ExportMeta(...)}``
    writes this module's format. ``settings``: plain data."""

    def __init__(self, **settings: Any) -> None:
        self.meta = dict(settings)

    def state_dict(self) -> dict:
        return dict(self.meta)

    def load_state_dict(self, state: Mapping) -> None:
        self.meta = dict(state)
