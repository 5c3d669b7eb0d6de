"""Release packaging: one deterministic ``<name>_v<version>.zip`` per bundle, plus ``index.json`` and ``SHA256SUMS``.

The layout is the model zoo's: the bundle folder ``<name>/`` at the top of the zip, ``configs/``, ``docs/``,
``LICENSE``, ``large_files.yml`` and, when present, the weights under ``models/``. MONAI fetches such a zip with
``python -m monai.bundle download --name <name> --version <version> --url <url> --bundle_dir ./bundles`` (or
``--source github --repo owner/repo/tag``, which looks for ``<name>_v<version>.zip`` among the release assets) and
``monai.bundle.load`` builds the network from it.

A bundle released with weights is made to describe them (:func:`match_weights`): the settings its weights were
trained with (the export's ``meta``: backbone, channels, image size, classes) replace the configs' defaults in the
zipped copy, and the network that ``configs/inference.json`` builds must then load them strictly, or packaging
refuses the bundle; ``monai.bundle.load`` and the inference config then need no overrides. Each weights file is
also written beside the zips as ``<name>_v<version>_<file>`` and listed in the zipped ``large_files.yml`` (path,
url, sha256): the model zoo's way of fetching the weights of a bundle folder that lacks them.

The zips are byte-for-byte reproducible: entries sorted by path, every timestamp 1980-01-01 00:00:00, permissions
0644, no directory entries, no extra fields, a fixed compression level. Caches and run outputs are left out
(:data:`EXCLUDED_DIRS`, :data:`EXCLUDED_FILES`), and so are the resume checkpoints of training (``models/*checkpoint*``):
a release ships the weights a user loads, not an optimizer state.

Used by ``dcl-cstp package --out DIST [--bundles a,b] [--bundles-dir bundles] [--base-url URL]``, which also builds
the ``dcl-cstp`` wheel and sdist the bundles need (:func:`build_python_package`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from .networks.export import meta_sidecar, read_export, read_export_meta, split_for_release
from .networks.resnet_encoder import ENCODER_CHANNELS

__all__ = ["EXCLUDED_DIRS", "EXCLUDED_FILES", "WeightsMismatch", "build_python_package", "bundle_files",
           "bundle_version", "match_weights", "package_bundle", "package_bundles", "sha256_file"]

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


def _write_zip(path: Path, top: str, root: Path, files: Iterable[PurePosixPath],
               replaced: Mapping[str, bytes] | None = None) -> None:
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
        for rel in files:
            info = zipfile.ZipInfo(f"{top}/{rel.as_posix()}", date_time=ZIP_DATE_TIME)
            info.create_system = 3  # unix, so that external_attr holds the mode
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = (replaced or {}).get(rel.as_posix()) or (root / rel).read_bytes()
            zf.writestr(info, data, compresslevel=COMPRESS_LEVEL)
    os.replace(tmp, path)


#: export ``meta`` keys that say how a network is built; a config's literal default of the same name is set to them
ARCHITECTURE_KEYS = ("backbone", "in_channels", "out_channels", "image_size", "cache_channels", "latent_channels",
                     "class_names")
#: per bundle, the weights file that each network of ``configs/inference.json`` loads (default: network_def <- model.pt)
INFERENCE_WEIGHTS = {
    "dcl_pretrain": {"network_def": "models/encoder.pt"},
    "ldm_synthesis": {"network_def": "models/model.pt", "autoencoder_def": "models/autoencoder.pt"},
}


class WeightsMismatch(ValueError):
    """A bundle's weights do not fit the network its ``configs/inference.json`` builds."""


def _is_literal(value: object) -> bool:
    return not (isinstance(value, str) and value.startswith(("$", "@", "%")))


def _set_defaults(config: dict, settings: Mapping, where: str, changes: list[str]) -> None:
    """Set, in ``config``, every literal top-level key and ``default_settings`` entry named in ``settings``."""
    for block, prefix in ((config, ""), (config.get("default_settings"), "default_settings#")):
        if not isinstance(block, dict):
            continue
        for key, value in settings.items():
            if key in block and _is_literal(block[key]) and block[key] != value:
                changes.append(f"{where}: {prefix}{key} {block[key]!r} -> {value!r}")
                block[key] = value


def _set_data_format(meta: dict, settings: Mapping, changes: list[str]) -> None:
    """``network_data_format`` of ``metadata.json`` set to ``settings``: the input image's channels and size, the
    output's channels (``out_channels`` or one per class, named in ``channel_def``)."""
    fmt = meta.get("network_data_format", {})
    image = fmt.get("inputs", {}).get("image")
    pred = fmt.get("outputs", {}).get("pred")
    wanted: list[tuple[dict, str, object]] = []
    if isinstance(image, dict):
        if "in_channels" in settings:
            wanted.append((image, "num_channels", settings["in_channels"]))
        if "image_size" in settings and all(isinstance(v, int) for v in image.get("spatial_shape", ["n"])):
            wanted.append((image, "spatial_shape", [settings["image_size"]] * len(image["spatial_shape"])))
    if isinstance(pred, dict):
        if "class_names" in settings:
            names = list(settings["class_names"])
            wanted += [(pred, "num_channels", len(names)),
                       (pred, "channel_def", {str(i): n for i, n in enumerate(names)})]
        elif "out_channels" in settings:
            wanted.append((pred, "num_channels", settings["out_channels"]))
        elif pred.get("format") == "embedding" and settings.get("backbone") in ENCODER_CHANNELS:  # dcl_pretrain
            wanted.append((pred, "num_channels", ENCODER_CHANNELS[settings["backbone"]][-1]))
    for block, key, value in wanted:
        if block.get(key) != value:
            where = "inputs#image" if block is image else "outputs#pred"
            changes.append(f"configs/metadata.json: network_data_format#{where}#{key} {block.get(key)!r} -> {value!r}")
            block[key] = value
    for block in (image, pred):  # one channel_def entry per channel
        if isinstance(block, dict) and isinstance(block.get("channel_def"), dict):
            defs = list(block["channel_def"].values())
            if defs and len(defs) != block.get("num_channels"):
                block["channel_def"] = {str(i): defs[min(i, len(defs) - 1)] for i in range(block["num_channels"])}


def match_weights(bundle_dir: str | os.PathLike) -> tuple[dict[str, bytes], list[str]]:
    """The bundle's config files rewritten to the settings its weights were trained with, as ``{path: bytes}``
    (only the changed ones), and a line per change. Then the check: every network of ``configs/inference.json``
    (:data:`INFERENCE_WEIGHTS`), built from the rewritten config, loads its weights file strictly, else
    :class:`WeightsMismatch` names the file and the keys. Bundles without weights: nothing to do."""
    from monai.bundle import ConfigParser

    root = Path(bundle_dir).resolve()
    weights = INFERENCE_WEIGHTS.get(root.name, {"network_def": "models/model.pt"})
    present = {net: f for net, f in weights.items() if (root / f).is_file()}
    if not present:
        return {}, []
    settings: dict = {}
    for f in sorted(set(present.values())):
        meta = read_export_meta(root / f)  # memory-mapped: the weights are read once, below
        settings.update({k: meta[k] for k in ARCHITECTURE_KEYS if k in meta})
    replaced, changes = {}, []
    for path in sorted((root / "configs").glob("*.json")):
        if path.name == "metadata.json":
            continue  # its network_data_format: below
        config = json.loads(path.read_text())
        before = len(changes)
        _set_defaults(config, settings, f"configs/{path.name}", changes)
        if len(changes) > before:
            replaced[f"configs/{path.name}"] = (json.dumps(config, indent=4) + "\n").encode()
    metadata = json.loads((root / "configs" / "metadata.json").read_text())
    before = len(changes)
    _set_data_format(metadata, settings, changes)
    if len(changes) > before:
        replaced["configs/metadata.json"] = (json.dumps(metadata, indent=4) + "\n").encode()
    inference = replaced.get("configs/inference.json") or (root / "configs" / "inference.json").read_bytes()
    for net_id, f in present.items():
        parser = ConfigParser(json.loads(inference))
        parser.read_meta(metadata)
        parser["bundle_root"] = str(root)
        parser["device"] = "cpu"
        net = parser.get_parsed_content(net_id)
        state = read_export(root / f)[0]
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsMismatch(
                f"{root.name}: {f} does not fit the {net_id} of configs/inference.json (the bundle's settings, after "
                f"setting those the weights record: {settings or 'none recorded'}): {str(err)[:600]}"
            ) from None
    return replaced, changes


def _large_files_yml(entries: Sequence[Mapping]) -> bytes:
    """``large_files.yml`` in the model zoo's form (YAML; the strings JSON-quoted, which YAML reads as they are)."""
    lines = ["# The weights of this release: each is also published beside the bundle zip (written by dcl-cstp",
             "# package). A bundle folder without them fetches them with the model zoo's tools from these urls,",
             "# checked against the sha256.", "large_files:"]
    for e in entries:
        lines += [f"  - path: {json.dumps(e['path'])}", f"    url: {json.dumps(e['url'])}",
                  f"    hash_val: {json.dumps(e['sha256'])}", '    hash_type: "sha256"']
    if not entries:
        lines[-1] += " []"
    return ("\n".join(lines) + "\n").encode()


def package_bundle(bundle_dir: str | os.PathLike, out_dir: str | os.PathLike, require_weights: bool = False,
                   base_url: str | None = None) -> dict:
    """Write ``out_dir/<name>_v<version>.zip`` for one bundle, and its weights as separate files; returns its index
    entry (``changes``: the defaults set to match the weights, see :func:`match_weights`). Each ``models/*.pt`` export
    is released as the model zoo keeps weights, a bare state dict, with its ``meta`` beside it in
    ``models/<name>.meta.json`` (:func:`~dcl_cstp_ext.networks.export.split_for_release`)."""
    root = Path(bundle_dir).resolve()
    name = root.name
    version = bundle_version(root)
    files = bundle_files(root)
    weights = [f.as_posix() for f in files if f.parts[0] == "models"]
    if require_weights and not weights:
        raise FileNotFoundError(f"{name}: no weights under {root / 'models'} (train the bundle or copy them there)")
    replaced, changes = match_weights(root)
    for w in [w for w in weights if w.endswith(".pt")]:  # the zoo's form: bare weights, their meta beside them
        data, meta_json = split_for_release(root / w)
        replaced[w] = data
        if meta_json is not None:
            side = meta_sidecar(PurePosixPath(w)).as_posix()
            replaced[side] = meta_json
            if side not in weights:
                weights.append(side)
    weights.sort()
    files = sorted({*files, *(PurePosixPath(w) for w in weights)}, key=lambda p: p.as_posix())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    large = []
    for w in weights:
        asset = f"{name}_v{version}_{PurePosixPath(w).name}"
        data = replaced.get(w) or (root / w).read_bytes()
        (out / asset).write_bytes(data)
        large.append({"path": w, "file": asset, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                      "url": base_url.rstrip("/") + "/" + asset if base_url else asset})
    replaced["large_files.yml"] = _large_files_yml(large)
    if PurePosixPath("large_files.yml") not in files:
        files = sorted([*files, PurePosixPath("large_files.yml")], key=lambda p: p.as_posix())
    filename = f"{name}_v{version}.zip"
    _write_zip(out / filename, name, root, files, replaced)
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
        "large_files": large,
        "changes": changes,
    }
    if base_url:
        entry["url"] = base_url.rstrip("/") + "/" + filename
    return entry


def package_bundles(out_dir: str | os.PathLike, bundles: Sequence[str] | None = None,
                    bundles_dir: str | os.PathLike = "bundles", require_weights: bool = False,
                    base_url: str | None = None, python_package: bool = True,
                    package_source: str | os.PathLike | None = None) -> dict:
    """Package ``bundles`` (default: every folder of ``bundles_dir`` with a ``configs/metadata.json``) into
    ``out_dir``, with the ``dcl-cstp`` wheel and sdist they need (``python_package``, :func:`build_python_package`),
    and write ``out_dir/index.json`` and ``out_dir/SHA256SUMS`` (``sha256sum -c`` format: every zip, weights file
    and package file). Returns the index. The index lists the bundles of this call, sorted by name; it holds no
    timestamp, so packaging the same bundles twice gives identical zips and index."""
    src = Path(bundles_dir)
    if not bundles:
        bundles = sorted(p.name for p in src.iterdir() if (p / "configs" / "metadata.json").is_file())
    missing = [b for b in bundles if not (src / b / "configs" / "metadata.json").is_file()]
    if missing:
        raise FileNotFoundError(f"not bundles of {src}: {', '.join(missing)}")
    entries = [package_bundle(src / b, out_dir, require_weights=require_weights, base_url=base_url)
               for b in sorted(set(bundles))]
    index: dict = {"bundles": entries}
    if python_package:
        index["python_package"] = build_python_package(out_dir, package_source)
    out = Path(out_dir)
    (out / "index.json").write_text(json.dumps(index, indent=4) + "\n")
    listed = [*entries, *(f for e in entries for f in e["large_files"]), *index.get("python_package", [])]
    listed.sort(key=lambda e: e["file"])
    (out / "SHA256SUMS").write_text("".join(f"{e['sha256']}  {e['file']}\n" for e in listed))
    return index


#: what a source distribution of the ``dcl-cstp`` package holds (copied to a temporary folder for the build, so that
#: the build writes nothing into the source tree)
PACKAGE_FILES = ("pyproject.toml", "setup.cfg", "README.md", "LICENSE", "dcl_cstp_ext")


def package_source() -> Path | None:
    """The folder holding this package's ``pyproject.toml`` (a clone of the repository), or None (an installed
    wheel)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "setup.cfg").is_file() else None


def build_python_package(out_dir: str | os.PathLike, source: str | os.PathLike | None = None) -> list[dict]:
    """Build the ``dcl-cstp`` wheel and sdist (``python -m build --no-isolation``) from ``source`` (default:
    :func:`package_source`) into ``out_dir``; returns ``[{"file", "size", "sha256"}]``. The bundles name the package
    in ``required_packages_version`` and say in ``required_packages_source`` that it comes with the release."""
    import shutil
    import subprocess
    import sys
    import tempfile

    src = Path(source) if source else package_source()
    if src is None or not (src / "pyproject.toml").is_file():
        raise FileNotFoundError(f"no dcl-cstp source (pyproject.toml) at {src or 'this installation'}: pass "
                                "--package-source DIR (a clone of the repository) or --python-package False")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dcl-cstp-build-") as tmp:
        for name in PACKAGE_FILES:
            path = src / name
            if path.is_dir():
                shutil.copytree(path, Path(tmp) / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif path.is_file():
                shutil.copy2(path, Path(tmp) / name)
        built = Path(tmp) / "dist"
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}  # 1980-01-01 for the archives' timestamps
        done = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir",
                               str(built), tmp], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"building the dcl-cstp package failed (python -m build, needs the 'build' package: "
                               f"pip install build):\n{(done.stdout + done.stderr)[-3000:]}")
        files = []
        for path in sorted(built.iterdir()):
            shutil.copy2(path, out / path.name)
            files.append({"file": path.name, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return files
