"""Model-zoo style verification of every bundle under ``bundles/`` (offline).

Per bundle: required files and the zoo's README sections; ``version`` present in ``changelog``; metadata against
the model zoo's published schema (``ci/schema/meta_schema_20240725.json``, an offline copy, see ``ci/README.md``)
and the project's stricter rules (:func:`check_project_rules`); JSON files parse and are formatted (4-space indent); ``verify_net_in_out`` on
``network_def``; ``ckpt_export`` to TorchScript of a freshly initialised checkpoint and the exported model's output
equal to the checkpoint's. The bundles' own train -> evaluate -> infer runs on tiny built-in data are the
``tests/test_bundle_*.py`` tests (``make test`` runs both).

    python ci/verify_bundles.py [NAME ...]
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"
#: the model zoo's metadata schema, byte for byte as published (the URL every bundle's ``schema`` names)
SCHEMA = ROOT / "ci" / "schema" / "meta_schema_20240725.json"
REQUIRED = ["LICENSE", "configs/metadata.json", "configs/inference.json", "configs/logging.conf", "docs/README.md",
            "docs/data_license.txt", "large_files.yml"]
#: config whose network_def is checked, and the one exported to TorchScript, when not inference.json
NET_CONFIG: dict[str, tuple[str, str]] = {}
#: bundles whose network_def the zoo's I/O and export checks cannot drive, and why
NET_CHECK_SKIPPED = {
    "ldm_synthesis": "network_def is the latent DiffusionModelUNet, called as (latent, timesteps), which "
    "verify_net_in_out and the export check cannot feed; its shapes are tested in tests/test_ldm_*.py",
}


#: required packages that no public index holds: the metadata must say where each comes from
PRIVATE_PACKAGES = ("dcl-cstp",)


class BundleError(AssertionError):
    pass


#: the sections of a model zoo bundle's docs/README.md
README_SECTIONS = ("## Model Overview", "## Training configuration", "### Input", "### Output", "## Performance",
                   "## MONAI Bundle Commands", "## References", "## License")


def check_files(bundle: Path) -> None:
    missing = [f for f in REQUIRED if not (bundle / f).is_file()]
    if missing:
        raise BundleError(f"{bundle.name}: missing required files {missing}")
    lines = set((bundle / "docs" / "README.md").read_text().splitlines())
    absent = [s for s in README_SECTIONS if s not in lines]
    if absent:
        raise BundleError(f"{bundle.name}: docs/README.md lacks the model zoo's sections {absent}")


def check_metadata(bundle: Path) -> dict:
    """The zoo's schema (what ``ci/verify_bundle.py`` of the model zoo checks), then :func:`check_project_rules`."""
    import jsonschema

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    if meta.get("version") not in meta.get("changelog", {}):
        raise BundleError(f"{bundle.name}: version {meta.get('version')} is not in the changelog")
    if str(meta.get("schema", "")).rsplit("/", 1)[-1] != SCHEMA.name:
        raise BundleError(f"{bundle.name}: metadata.json: schema should name {SCHEMA.name}, got {meta.get('schema')!r}")
    try:
        jsonschema.validate(meta, json.loads(SCHEMA.read_text()))
    except jsonschema.ValidationError as err:
        raise BundleError(f"{bundle.name}: metadata.json: {err.message} at {list(err.absolute_path)}") from err
    check_project_rules(bundle.name, meta)
    return meta


def check_project_rules(name: str, meta: dict) -> None:
    """What the zoo's schema allows but a zoo bundle never does: a ``version`` that is not ``X.Y.Z``;
    ``eval_metrics`` that are not numbers (the zoo gives the scores achieved); a ``channel_def`` whose entries are
    not one per channel (but for a ``labels`` image, where they name its values, as MONAI Label reads them); a ``value_range`` that is neither empty nor ``[low, high]``; a required package without a
    ``required_packages_source`` entry saying where it comes from, when it is on no public index."""
    problems = []
    if not re.fullmatch(r"\d+\.\d+\.\d+", str(meta.get("version", ""))):
        problems.append(f"version {meta.get('version')!r} is not X.Y.Z")
    for key, value in meta.get("eval_metrics", {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"eval_metrics.{key} is {value!r}, not a number")
    for fmt in [k for k in meta if k.endswith("data_format")]:
        for side in ("inputs", "outputs", "post_processed_outputs"):
            for key, t in meta[fmt].get(side, {}).items():
                where = f"{fmt}.{side}.{key}"
                if not isinstance(t, dict):
                    continue
                labels = t.get("format") == "labels"  # a label image: channel_def names its values, not channels
                if "channel_def" in t and not labels and len(t["channel_def"]) != t.get("num_channels"):
                    problems.append(f"{where}: {len(t['channel_def'])} channel_def entries for num_channels "
                                    f"{t.get('num_channels')}")
                if len(t.get("value_range", [])) not in (0, 2):
                    problems.append(f"{where}: value_range {t['value_range']} is neither [] nor [low, high]")
    for package in meta.get("required_packages_version", {}):
        if package in PRIVATE_PACKAGES and package not in meta.get("required_packages_source", {}):
            problems.append(f"required_packages_source does not say where {package} comes from")
    if problems:
        raise BundleError(f"{name}: metadata.json: " + "; ".join(problems))


def check_json_format(bundle: Path) -> None:
    for path in sorted(bundle.rglob("*.json")):
        text = path.read_text()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise BundleError(f"{path.relative_to(bundle.parent)}: invalid JSON: {err}") from err
        if text != json.dumps(data, indent=4) + "\n":
            raise BundleError(f"{path.relative_to(bundle.parent)}: not formatted (json.dumps(indent=4) + newline)")


def check_network(bundle: Path) -> None:
    from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

    net_cfg, export_cfg = NET_CONFIG.get(bundle.name, ("inference.json", "inference.json"))
    meta = str(bundle / "configs" / "metadata.json")
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=str(bundle / "configs" / net_cfg),
                      bundle_root=str(bundle), device="cpu", n=1, any=32)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / export_cfg))
    parser.read_meta(meta)
    parser["bundle_root"] = str(bundle)
    torch.manual_seed(0)
    net = parser.get_parsed_content("network_def").eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, ts = Path(tmp) / "model.pt", Path(tmp) / "model.ts"
        torch.save(net.state_dict(), ckpt)
        ckpt_export(net_id="network_def", filepath=str(ts), ckpt_file=str(ckpt), meta_file=meta,
                    config_file=str(bundle / "configs" / export_cfg), bundle_root=str(bundle))
        scripted = torch.jit.load(str(ts)).eval()
    io = json.loads(Path(meta).read_text())["network_data_format"]["inputs"]
    first = next(iter(io.values()))
    x = torch.rand(2, first["num_channels"], *[s if isinstance(s, int) else 64 for s in first["spatial_shape"]])
    with torch.no_grad():
        a, b = net(x), scripted(x)
    a, b = (a[-1], b[-1]) if isinstance(a, tuple) else (a, b)
    if not torch.allclose(a, b, atol=1e-5, rtol=1e-4):
        raise BundleError(f"{bundle.name}: TorchScript output differs from the checkpoint's")


def verify(name: str) -> None:
    bundle = BUNDLES / name
    check_files(bundle)
    check_metadata(bundle)
    check_json_format(bundle)
    if name in NET_CHECK_SKIPPED:
        print(f"note {name}: network checks skipped: {NET_CHECK_SKIPPED[name]}")
        return
    check_network(bundle)


def main(names: list[str]) -> int:
    names = names or sorted(p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir())
    failed = 0
    for name in names:
        try:
            verify(name)
            print(f"PASS {name}")
        except Exception as err:  # report every bundle, then fail
            failed += 1
            print(f"FAIL {name}: {err}")
    print(f"{len(names) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
