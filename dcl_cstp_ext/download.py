"""The checked download of a released bundle: the sha256 of the release index is verified before anything is
extracted, unsafe zip entries are refused before anything is written, and the bundle is extracted into a temporary
folder that is moved into place only when complete (``dcl-cstp download NAME --index URL``)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

__all__ = ["DownloadError", "download_bundle", "index_entry", "safe_members"]

logger = logging.getLogger(__name__)


class DownloadError(ValueError):
    """A release that is refused: not in the index, a checksum that differs, an unsafe or damaged zip."""


def _open(location: str):
    """A readable stream of a URL (``http(s)://``, ``file://``) or a local path."""
    if urllib.parse.urlparse(location).scheme in ("http", "https", "file"):
        return urllib.request.urlopen(location, timeout=60)  # noqa: S310 - the user's own index and release
    return open(location, "rb")


def index_entry(index: str, name: str, version: str | None = None) -> tuple[dict, str]:
    """The entry of bundle ``name`` (and ``version``, if given) in the release ``index`` (``index.json`` of
    ``dcl-cstp package``, a URL or a path), and the URL or path of its zip: the entry's ``url``, else its ``file``
    beside the index."""
    with _open(index) as fh:
        entries = json.loads(fh.read().decode()).get("bundles", [])
    found = [e for e in entries if e.get("name") == name and (version is None or e.get("version") == version)]
    if not found:
        listed = ", ".join(f"{e.get('name')} {e.get('version')}" for e in entries) or "nothing"
        raise DownloadError(f"{index}: no bundle {name}{' ' + version if version else ''} (it lists {listed})")
    entry = found[-1]
    if "sha256" not in entry:
        raise DownloadError(f"{index}: the entry of {name} has no sha256 to check the download against")
    if entry.get("url"):
        return entry, entry["url"]
    base = index.rsplit("/", 1)[0] if "://" in index else str(Path(index).parent)
    return entry, f"{base}/{entry['file']}"


def safe_members(archive: zipfile.ZipFile, top: str) -> list[zipfile.ZipInfo]:
    """Every entry of ``archive``, refused (:class:`DownloadError`, before anything is written) if one is absolute,
    climbs out (``..``), is a link, or lies outside the folder ``top``."""
    members = archive.infolist()
    for info in members:
        path = PurePosixPath(info.filename)
        mode = info.external_attr >> 16
        if path.is_absolute() or ".." in path.parts or "\\" in info.filename or ":" in path.parts[0]:
            raise DownloadError(f"unsafe path {info.filename!r} in the zip: refused, nothing was written")
        if stat.S_ISLNK(mode):
            raise DownloadError(f"link {info.filename!r} in the zip: refused, nothing was written")
        if path.parts[0] != top:
            raise DownloadError(f"{info.filename!r} lies outside the bundle folder {top}/: refused, nothing was "
                                "written")
    return members


def download_bundle(name: str, index: str, bundle_dir: str | os.PathLike = "bundles", version: str | None = None,
                    overwrite: bool = False) -> Path:
    """Download bundle ``name`` of the release ``index`` into ``bundle_dir/name`` and return that folder.

    The zip is fetched into a temporary folder of ``bundle_dir``, its sha256 compared with the index's, every entry
    checked (:func:`safe_members`) and every CRC verified, all before extraction; it is extracted there and moved
    into place only when complete. Any failure leaves ``bundle_dir`` as it was. An existing ``bundle_dir/name`` is
    refused unless ``overwrite`` (then it is replaced only once the new copy is complete)."""
    entry, location = index_entry(index, name, version)
    target = Path(bundle_dir) / name
    if target.exists() and not overwrite:
        raise DownloadError(f"{target} exists: pass --overwrite to replace it (only once the new copy is complete)")
    Path(bundle_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.download.", dir=bundle_dir))
    try:
        archive_path = work / entry.get("file", f"{name}.zip")
        digest = hashlib.sha256()
        with _open(location) as src, open(archive_path, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != entry["sha256"]:
            raise DownloadError(f"{location}: sha256 {digest.hexdigest()} differs from the index's {entry['sha256']}: "
                                "the file was changed or damaged; nothing was extracted")
        try:
            with zipfile.ZipFile(archive_path) as archive:
                members = safe_members(archive, name)
                bad = archive.testzip()
                if bad is not None:
                    raise DownloadError(f"{location}: {bad} is damaged (CRC): nothing was extracted")
                archive.extractall(work / "extracted", members=members)
        except zipfile.BadZipFile as err:
            raise DownloadError(f"{location}: not a readable zip ({err}): nothing was extracted") from None
        fresh = work / "extracted" / name
        if not (fresh / "configs" / "metadata.json").is_file():
            raise DownloadError(f"{location}: no {name}/configs/metadata.json inside: not a bundle")
        old = work / "replaced"
        if target.exists():
            os.replace(target, old)
        try:
            os.replace(fresh, target)
        except OSError:
            if old.exists():  # put the copy it was to replace back
                os.replace(old, target)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("downloaded %s %s into %s (sha256 checked)", name, entry.get("version"), target)
    return target
