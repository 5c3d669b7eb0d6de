"""Release packaging: one deterministic ``<name>_v<version>.zip`` per bundle, plus ``index.json`` and ``SHA256SUMS``.

The layout is the model zoo's: the bundle folder ``<name>/`` at the top of the zip, ``configs/``, ``docs/``,
``LICENSE``, ``large_files.yml`` and, when present, the weights under ``models/``. MONAI fetches such a zip with
``python -m monai.bundle download --name <name> --version <version> --url <url> --bundle_dir ./bundles`` (or
``--source github --repo owner/repo/tag``, which looks for ``<name>_v<version>.zip`` among the release assets) and
``monai.bundle.load`` builds the network from it.

The zips are byte-for-byte reproducible: entries sorted by path, every timestamp 1980-01-01 00:00:00, permissions
0644, no directory entries, no extra fields, a fixed compression level. Caches and run outputs are left out
(:data:`EXCLUDED_DIRS`, :data:`EXCLUDED_FILES`), and so are the resume checkpoints of training (``models/*checkpoint*``):
a release ships the weights a user loads, not an optimizer state.

Used by ``dcl-cstp package --out DIST [--bundles a,b] [--bundles-dir bundles] [--base-url URL]``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

__all__ = ["EXCLUDED_DIRS", "EXCLUDED_FILES", "bundle_files", "bundle_version", "package_bundle", "package_bundles",
           "sha256_file"]

ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
FILE_MODE = 0o100644  # regular file, rw-r--r--
COMPRESS_LEVEL = 6

#: folders never packaged, at any depth (caches, run outputs, experiment stores, data made by the demos)
EXCLUDED_DIRS = frozenset({
    "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache", ".git", ".mypy_cache",
    "eval", "tensorboard", "runs", "mlruns", "logs", "demo_data", "dist",
})
#: file name patterns never packaged (matched against the path inside the bundle and against the name)
EXCLUDED_FILES = (
    "*.pyc", "*.pyo", "*~", "*.swp", ".DS_Store", "Thumbs.db", "events.out.tfevents.*", "mlruns.db", "*.lock",
    "models/*checkpoint*",
)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_version(bundle_dir: str | os.PathLike) -> str:
    """``version`` of ``configs/metadata.json``; it must also be a key of its ``changelog``."""
    meta_file = Path(bundle_dir) / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    version = str(meta.get("version", "")).strip()
    if not version:
        raise ValueError(f"{meta_file} has no version")
    if version not in meta.get("changelog", {}):
        raise ValueError(f"{meta_file}: version {version} has no changelog entry")
    return version


def _excluded(rel: PurePosixPath) -> bool:
    if any(part in EXCLUDED_DIRS for part in rel.parts[:-1]):
        return True
    return any(fnmatch.fnmatch(rel.as_posix(), p) or fnmatch.fnmatch(rel.name, p) for p in EXCLUDED_FILES)


def bundle_files(bundle_dir: str | os.PathLike) -> list[PurePosixPath]:
    """The files of a bundle that a release ships, as sorted POSIX paths relative to the bundle folder."""
    root = Path(bundle_dir)
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            rel = PurePosixPath(path.relative_to(root).as_posix())
            if path.is_file() and not _excluded(rel):
                files.append(rel)
    return sorted(files, key=lambda p: p.as_posix())


def _write_zip(path: Path, top: str, root: Path, files: Iterable[PurePosixPath]) -> None:
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
        for rel in files:
            info = zipfile.ZipInfo(f"{top}/{rel.as_posix()}", date_time=ZIP_DATE_TIME)
            info.create_system = 3  # unix, so that external_attr holds the mode
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = (root / rel).read_bytes()
            zf.writestr(info, data, compresslevel=COMPRESS_LEVEL)
    os.replace(tmp, path)


def package_bundle(bundle_dir: str | os.PathLike, out_dir: str | os.PathLike, require_weights: bool = False,
                   base_url: str | None = None) -> dict:
    """Write ``out_dir/<name>_v<version>.zip`` for one bundle; returns its index entry."""
    root = Path(bundle_dir).resolve()
    name = root.name
    version = bundle_version(root)
    files = bundle_files(root)
    weights = [f.as_posix() for f in files if f.parts[0] == "models"]
    if require_weights and not weights:
        raise FileNotFoundError(f"{name}: no weights under {root / 'models'} (train the bundle or copy them there)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    filename = f"{name}_v{version}.zip"
    _write_zip(out / filename, name, root, files)
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    entry = {
        "name": name,
        "version": version,
        "file": filename,
        "size": (out / filename).stat().st_size,
        "sha256": sha256_file(out / filename),
        "hash_type": "sha256",
        "monai_version": meta.get("monai_version"),
        "weights": weights,
    }
    if base_url:
        entry["url"] = base_url.rstrip("/") + "/" + filename
    return entry


def package_bundles(out_dir: str | os.PathLike, bundles: Sequence[str] | None = None,
                    bundles_dir: str | os.PathLike = "bundles", require_weights: bool = False,
                    base_url: str | None = None) -> dict:
    """Package ``bundles`` (default: every folder of ``bundles_dir`` with a ``configs/metadata.json``) into
    ``out_dir`` and write ``out_dir/index.json`` and ``out_dir/SHA256SUMS`` (``sha256sum -c`` format). Returns the
    index. The index lists the bundles of this call, sorted by name; it holds no timestamp, so packaging the same
    bundles twice gives identical files."""
    src = Path(bundles_dir)
    if not bundles:
        bundles = sorted(p.name for p in src.iterdir() if (p / "configs" / "metadata.json").is_file())
    missing = [b for b in bundles if not (src / b / "configs" / "metadata.json").is_file()]
    if missing:
        raise FileNotFoundError(f"not bundles of {src}: {', '.join(missing)}")
    entries = [package_bundle(src / b, out_dir, require_weights=require_weights, base_url=base_url)
               for b in sorted(set(bundles))]
    index = {"bundles": entries}
    out = Path(out_dir)
    (out / "index.json").write_text(json.dumps(index, indent=4) + "\n")
    (out / "SHA256SUMS").write_text("".join(f"{e['sha256']}  {e['file']}\n" for e in entries))
    return index
