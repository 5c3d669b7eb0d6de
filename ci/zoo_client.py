"""Run the model zoo's own CI scripts on this project's bundles, as a client (nothing of the zoo is copied here).

    python ci/zoo_client.py --zoo ZOO [--work DIR] [--bundles a,b] [--modes min,full]

``ZOO`` is a checkout of Project-MONAI/model-zoo (the commit used is in ``ci/README.md``). What the zoo's premerge CI
does to a changed bundle, done here offline:

1. weights: the zoo's placeholder weights (``verify_bundle._produce_fake_weights``: the ``state_dict`` of a freshly
   built ``network_def``) for every file a bundle's inference loads (``dcl_pretrain``: ``models/encoder.pt``, and its
   pre-training method's ``models/model.pt``; ``ldm_synthesis``: ``model.pt`` and ``autoencoder.pt``);
2. ``dcl-cstp package`` of the bundles with those weights into ``WORK/dist`` (zips, weights with their sha256 in each
   zipped ``large_files.yml``, the dcl-cstp wheel), every url a ``file://`` url of ``WORK/dist``;
3. the zips extracted into ``WORK/models/<name>`` (the zoo's layout), ``WORK/models/model_info.json`` empty (no
   earlier version), and the zoo's metadata schema put where its ``prepare_schema.py`` puts its download
   (``<bundle>/eval/schema.json``; here the offline copy ``ci/schema/meta_schema_20240725.json``);
4. ``ZOO/ci/get_bundle_requirements.py`` for each bundle, and a check that its pins resolve from ``WORK/dist`` and the
   installed packages (``pip install --dry-run --no-index --find-links WORK/dist``);
5. ``ZOO/ci/verify_bundle.py`` in each mode (``min``: files, large files, version, metadata; ``full``: also
   ``verify_net_in_out`` and the TorchScript export), with ``ldm_synthesis`` added to the two exclusion lists of
   ``ZOO/ci/bundle_custom_data.py`` that the zoo applies to its latent diffusion bundles
   (``exclude_verify_shape_list``, ``exclude_verify_torchscript_list``): its ``network_def`` is a diffusion U-Net
   called as ``(latent, timesteps)``, which ``verify_net_in_out`` cannot feed, and MONAI's attention blocks cannot be
   scripted; and ``dcl_pretrain``'s weights name (:data:`WEIGHTS_NAMES`) in the zoo's ``_get_weights_names``.

Exit status 0 when every step passes for every bundle. Needs torch, MONAI and ``build`` (the wheel), no network.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "ci" / "schema" / "meta_schema_20240725.json"
BUNDLES = ("dcl_pretrain", "isic_seg", "kvasir_seg", "ldm_synthesis", "pneumonia_cls")
#: the zoo's exclusions for its latent diffusion bundles, applied to ours (see the module docstring)
DIFFUSION_EXCLUSIONS = {"exclude_verify_shape_list": ["ldm_synthesis"],
                        "exclude_verify_torchscript_list": ["ldm_synthesis"]}
#: placeholder weights: (config, network id, file) per bundle; default: inference.json's network_def -> model.pt
PLACEHOLDERS = {
    "dcl_pretrain": [("inference.json", "network_def", "encoder.pt"), ("train.json", "network_def", "model.pt")],
    "ldm_synthesis": [("inference.json", "network_def", "model.pt"),
                      ("inference.json", "autoencoder_def", "autoencoder.pt")],
}

#: the zoo's per-bundle weights names (``verify_bundle._get_weights_names``, which names model_autoencoder.pt for its
#: brats diffusion bundles): dcl_pretrain's inference network is the encoder, saved as models/encoder.pt (its
#: models/model.pt is the whole pre-training method, which ``monai.bundle.load`` builds from train.json)
WEIGHTS_NAMES = {"dcl_pretrain": ("encoder.pt", None)}

VERIFY = """
import sys
sys.path.insert(0, {ci!r})
import bundle_custom_data
for name, extra in {exclusions!r}.items():
    getattr(bundle_custom_data, name).extend(extra)
import verify_bundle
if {weights!r}:
    zoo_names = verify_bundle._get_weights_names
    verify_bundle._get_weights_names = lambda bundle: {weights!r} if bundle == {bundle!r} else zoo_names(bundle)
verify_bundle.verify({bundle!r}, {models!r}, {mode!r})
"""


def placeholder_weights(src: Path) -> None:
    """The zoo's ``_produce_fake_weights`` (the ``state_dict`` of a fresh ``network_def``), written as training writes
    weights, in the project's export format with the settings that build them (``save_export``), so that packaging
    turns them into the release form the zoo reads (bare weights, ``<name>.meta.json`` beside them)."""
    import torch
    from monai.bundle import ConfigParser

    from dcl_cstp_ext.networks import save_export
    from dcl_cstp_ext.release import ARCHITECTURE_KEYS

    (src / "models").mkdir(exist_ok=True)
    for config, net_id, file in PLACEHOLDERS.get(src.name, [("inference.json", "network_def", "model.pt")]):
        parser = ConfigParser()
        parser.read_config(str(src / "configs" / config))
        parser.read_meta(str(src / "configs" / "metadata.json"))
        parser["bundle_root"] = str(src)
        torch.manual_seed(0)
        settings = {k: parser.get_parsed_content(k) for k in ARCHITECTURE_KEYS if k in parser}
        save_export(src / "models" / file, parser.get_parsed_content(net_id).state_dict(),
                    {"placeholder": True, **{k: v for k, v in settings.items() if isinstance(v, (int, str, list))}})


def run(cmd: list[str], cwd: Path) -> tuple[bool, str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return done.returncode == 0, (done.stdout + done.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", required=True, help="a checkout of Project-MONAI/model-zoo")
    parser.add_argument("--work", default="runs/zoo_client", help="work folder (emptied first)")
    parser.add_argument("--bundles", default=",".join(BUNDLES))
    parser.add_argument("--modes", default="min,full")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from dcl_cstp_ext.release import package_bundles

    zoo_ci = Path(args.zoo).resolve() / "ci"
    if not (zoo_ci / "verify_bundle.py").is_file():
        parser.error(f"{zoo_ci / 'verify_bundle.py'} not found: --zoo must be a checkout of Project-MONAI/model-zoo")
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    names = [b for b in args.bundles.split(",") if b]
    src, dist, models = work / "src", work / "dist", work / "models"
    for name in names:
        shutil.copytree(ROOT / "bundles" / name, src / name,
                        ignore=shutil.ignore_patterns("models", "eval", "__pycache__"))
        placeholder_weights(src / name)
    index = package_bundles(dist, names, bundles_dir=src, base_url=dist.as_uri())
    models.mkdir(parents=True)
    (models / "model_info.json").write_text("{}\n")
    for entry in index["bundles"]:
        with zipfile.ZipFile(dist / entry["file"]) as zf:
            zf.extractall(models)
        (models / entry["name"] / "eval").mkdir()
        shutil.copyfile(SCHEMA, models / entry["name"] / "eval" / "schema.json")

    results = []
    for name in names:
        ok, out = run([sys.executable, str(zoo_ci / "get_bundle_requirements.py"), "--b", name, "--p", str(models)],
                      cwd=work)
        requirements = out.strip().splitlines()[-1] if ok else ""
        if ok and Path(requirements).is_file():
            pins = Path(requirements).read_text().split()
            ours = [p for p in pins if p.startswith("dcl-cstp==")]
            ok, out = run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps",
                           "--find-links", str(dist), *ours], cwd=work)
            out = f"pins {pins}\n" + out
        results.append((name, "requirements", ok, out))
        for mode in args.modes.split(","):
            code = VERIFY.format(ci=str(zoo_ci), exclusions=DIFFUSION_EXCLUSIONS if name == "ldm_synthesis" else {},
                                 weights=WEIGHTS_NAMES.get(name), bundle=name, models=str(models), mode=mode)
            ok, out = run([sys.executable, "-c", code], cwd=work)
            results.append((name, f"verify_bundle {mode}", ok, out))
    for name, step, ok, out in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {step}")
        if not ok:
            print("    " + "\n    ".join(out.strip().splitlines()[-15:]))
    (work / "results.json").write_text(json.dumps(
        [{"bundle": n, "step": s, "passed": ok} for n, s, ok, _ in results], indent=1) + "\n")
    failed = sum(not ok for *_, ok, _ in results)
    print(f"{len(results) - failed} passed, {failed} failed (work folder {work})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
