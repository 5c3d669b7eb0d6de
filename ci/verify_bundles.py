"""Model-zoo style verification of every bundle under ``bundles/`` (offline).

Per bundle: required files; ``version`` present in ``changelog``; metadata against the schema kept in
``ci/schema/metadata.schema.json``; JSON files parse and are formatted (4-space indent); ``verify_net_in_out`` on
``network_def``; ``ckpt_export`` to TorchScript of a freshly initialised checkpoint and the exported model's output
equal to the checkpoint's. The bundles' own train -> evaluate -> infer runs on tiny built-in data are the
``tests/test_bundle_*.py`` tests (``make test`` runs both).

    python ci/verify_bundles.py [NAME ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"
SCHEMA = ROOT / "ci" / "schema" / "metadata.schema.json"
REQUIRED = ["LICENSE", "configs/metadata.json", "configs/inference.json", "configs/logging.conf", "docs/README.md",
            "docs/data_license.txt", "large_files.yml"]
#: config whose network_def is checked, and the one exported to TorchScript, when not inference.json
NET_CONFIG = {"dcl_pretrain": ("train.json", "inference.json")}
#: bundles whose network_def the zoo's I/O and export checks cannot drive, and why
NET_CHECK_SKIPPED = {
    "ldm_synthesis": "network_def is the latent DiffusionModelUNet, called as (latent, timesteps), which "
    "verify_net_in_out and the export check cannot feed; its shapes are tested in tests/test_ldm_*.py",
}


class BundleError(AssertionError):
    pass


def check_files(bundle: Path) -> None:
    missing = [f for f in REQUIRED if not (bundle / f).is_file()]
    if missing:
        raise BundleError(f"{bundle.name}: missing required files {missing}")


def check_metadata(bundle: Path) -> dict:
    import jsonschema

    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    if meta.get("version") not in meta.get("changelog", {}):
        raise BundleError(f"{bundle.name}: version {meta.get('version')} is not in the changelog")
    try:
        jsonschema.validate(meta, json.loads(SCHEMA.read_text()))
    except jsonschema.ValidationError as err:
        raise BundleError(f"{bundle.name}: metadata.json: {err.message} at {list(err.absolute_path)}") from err
    return meta


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
