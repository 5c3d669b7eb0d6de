"""Release packaging (``dcl-cstp package``): reproducible zips with the model zoo's layout, their index and
checksums; a user's download of a release over HTTP with MONAI's own API (``monai.bundle.download`` with a url,
``monai.apps.download_url`` / ``download_and_extract`` with the sha256 of the index: MONAI 1.6.1's
``monai.bundle.download`` itself takes no checksum), ``monai.bundle.load`` of the network and an inference run of
the downloaded bundle; a tampered zip fails MONAI's checksum."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import threading
import zipfile

import pytest
import torch
from conftest import BUNDLES
from monai.networks.nets import FlexibleUNet
from PIL import Image

from dcl_cstp_ext.cli import CLI
from dcl_cstp_ext.download import DownloadError
from dcl_cstp_ext.networks import read_export, save_export
from dcl_cstp_ext.release import WeightsMismatch, package_bundles

BACKBONE = "resnet10"  # the smallest FlexibleUNet encoder: a small zip, a quick test
VERSION = json.loads((BUNDLES / "kvasir_seg" / "configs" / "metadata.json").read_text())["version"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """kvasir_seg with a freshly initialised model in models/ (and caches and run outputs that must stay out of the
    zip) and pneumonia_cls without weights, packaged into DIST with the CLI."""
    tmp = tmp_path_factory.mktemp("release")
    src = tmp / "bundles"
    for name in ("kvasir_seg", "pneumonia_cls"):
        shutil.copytree(BUNDLES / name, src / name, ignore=shutil.ignore_patterns("models", "eval", "__pycache__"))
    kvasir = src / "kvasir_seg"
    torch.manual_seed(0)
    net = FlexibleUNet(3, 1, BACKBONE, spatial_dims=2)
    (kvasir / "models").mkdir()
    # what training writes: the weights and what builds them
    save_export(kvasir / "models" / "model.pt", net.state_dict(),
                {"backbone": BACKBONE, "in_channels": 3, "out_channels": 1, "image_size": 64})
    (kvasir / "models" / "checkpoint.pt").write_bytes(b"resume state, not released")
    for junk in ("configs/__pycache__/x.cpython-311.pyc", "eval/metrics.jsonl", "eval/tensorboard/events.out.tfevents.1",
                 "docs/.DS_Store", "mlruns/0/meta.yaml"):
        (kvasir / junk).parent.mkdir(parents=True, exist_ok=True)
        (kvasir / junk).write_text("x")
    dist = tmp / "dist"
    CLI().package(out=str(dist), bundles="kvasir_seg,pneumonia_cls", bundles_dir=str(src), python_package=False)
    return {"dist": dist, "src": src, "tmp": tmp, "state": net.state_dict()}


def test_zips_are_reproducible_and_hold_the_bundle_folder_and_weights(release, tmp_path):
    dist = release["dist"]
    index = json.loads((dist / "index.json").read_text())
    assert [e["name"] for e in index["bundles"]] == ["kvasir_seg", "pneumonia_cls"]
    sums = (dist / "SHA256SUMS").read_text().splitlines()
    listed = [*index["bundles"], *index["bundles"][0]["large_files"]]  # the zips and the weights beside them
    assert sums == [f"{e['sha256']}  {e['file']}" for e in sorted(listed, key=lambda e: e["file"])]
    for entry in listed:
        path = dist / entry["file"]
        assert entry["size"] == path.stat().st_size
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"{entry['sha256']}  {entry['file']}" in sums
    for entry in index["bundles"]:
        assert entry["file"] == f"{entry['name']}_v{VERSION}.zip" and entry["version"] == VERSION
    with zipfile.ZipFile(dist / f"kvasir_seg_v{VERSION}.zip") as zf:
        names = zf.namelist()
        assert names == sorted(names) and all(n.startswith("kvasir_seg/") for n in names)
        assert {"kvasir_seg/LICENSE", "kvasir_seg/configs/metadata.json", "kvasir_seg/configs/inference.json",
                "kvasir_seg/docs/README.md", "kvasir_seg/large_files.yml", "kvasir_seg/models/model.pt",
                "kvasir_seg/models/model.meta.json"} <= set(names)
        assert not any(s in n for n in names for s in ("__pycache__", "/eval/", "tfevents", ".DS_Store", "mlruns",
                                                       "checkpoint"))
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in zf.infolist()} == {0o100644}
    assert index["bundles"][0]["weights"] == ["models/model.meta.json", "models/model.pt"]
    assert index["bundles"][1]["weights"] == []

    # again, into another folder, after touching every source file: the same bytes
    for path in release["src"].rglob("*"):
        if path.is_file():
            os.utime(path, (1_700_000_000, 1_700_000_000))
            path.chmod(0o600)
    again = tmp_path / "again"
    CLI().package(out=str(again), bundles=("pneumonia_cls", "kvasir_seg"), bundles_dir=str(release["src"]),
                  python_package=False)
    for name in ("index.json", "SHA256SUMS", f"kvasir_seg_v{VERSION}.zip", f"pneumonia_cls_v{VERSION}.zip",
                 f"kvasir_seg_v{VERSION}_model.pt", f"kvasir_seg_v{VERSION}_model.meta.json"):
        assert (again / name).read_bytes() == (dist / name).read_bytes(), name


@pytest.fixture(scope="module")
def server(release):
    """DIST served over HTTP on a free port of 127.0.0.1 by a thread of the test; shut down at the end."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Quiet, directory=str(release["dist"].parent)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    saved = {k: os.environ.get(k) for k in ("no_proxy", "NO_PROXY")}
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_download_load_and_infer_with_monai(release, server, tmp_path, demo_data):
    from monai.bundle import ConfigWorkflow, download, load

    url = f"{server}/dist/kvasir_seg_v{VERSION}.zip"
    bundles = tmp_path / "bundles"
    # what the README tells a user to run (python -m monai.bundle download --name ... --version ... --url ...)
    download(name="kvasir_seg", version=VERSION, url=url, bundle_dir=str(bundles), progress=False)
    root = bundles / "kvasir_seg"
    assert (root / "configs" / "inference.json").is_file() and (root / "models" / "model.pt").is_file()

    # workflow_type names the config file that builds network_def: configs/inference.json
    # no overrides, no key_in_ckpt: packaging set the configs' defaults to what the weights were trained with
    # (backbone ...) and released them as the zoo does, a bare state dict (the meta beside it, model.meta.json)
    net = load(name="kvasir_seg", bundle_dir=str(bundles), workflow_type="inference", device="cpu", progress=False)
    assert isinstance(net, FlexibleUNet)
    for k, v in release["state"].items():
        torch.testing.assert_close(net.state_dict()[k], v)

    # the downloaded bundle's own inference config, with bundle_root = the downloaded folder: its models/model.pt
    images = tmp_path / "images"
    images.mkdir()
    src = sorted((demo_data["kvasir_seg"] / "Kvasir-SEG" / "images").iterdir())[0]
    with Image.open(src) as im:
        size = im.size
        im.convert("RGB").save(images / "case.png")
    out = tmp_path / "pred"
    wf = ConfigWorkflow(config_file=str(root / "configs" / "inference.json"),
                        meta_file=str(root / "configs" / "metadata.json"),
                        logging_file=str(root / "configs" / "logging.conf"), workflow_type="infer",
                        bundle_root=str(root), dataset_dir=str(images), output_dir=str(out),
                        image_size=32, batch_size=1, num_workers=0, device="cpu", amp=False)
    wf.initialize()
    assert wf.parser.get_parsed_content("ckpt_path") == os.path.join(str(root), "models", "model.pt")
    wf.run()
    wf.finalize()
    with Image.open(out / "masks" / "case.png") as mask:
        assert mask.size == size and mask.mode == "L"


def test_checksum_verified_download_and_a_tampered_zip(release, server, tmp_path):
    from monai.apps import download_and_extract, download_url
    from monai.apps.utils import HashCheckError
    from monai.bundle import download

    entry = {e["name"]: e for e in json.loads((release["dist"] / "index.json").read_text())["bundles"]}["pneumonia_cls"]
    ok = tmp_path / "ok"
    download_and_extract(f"{server}/dist/{entry['file']}", output_dir=str(ok), hash_val=entry["sha256"],
                         hash_type=entry["hash_type"], progress=False)
    assert json.loads((ok / "pneumonia_cls" / "configs" / "metadata.json").read_text())["version"] == VERSION
    # the README's verified variant of `monai.bundle download`: fetch <bundle_dir>/<name>.zip with its checksum first,
    # then `download` finds that file, skips fetching and extracts it
    bundles = tmp_path / "bundles"
    download_url(f"{server}/dist/{entry['file']}", filepath=str(bundles / "pneumonia_cls.zip"),
                 hash_val=entry["sha256"], hash_type="sha256", progress=False)
    download(name="pneumonia_cls", version=VERSION, url=f"{server}/dist/{entry['file']}", bundle_dir=str(bundles),
             progress=False)
    assert (bundles / "pneumonia_cls" / "configs" / "inference.json").is_file()

    # the same zip with one byte changed, served in place of the release
    data = bytearray((release["dist"] / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = release["dist"].parent / "tampered"
    tampered.mkdir(exist_ok=True)
    (tampered / entry["file"]).write_bytes(bytes(data))
    bad = tmp_path / "bad"
    with pytest.raises(HashCheckError):
        download_and_extract(f"{server}/tampered/{entry['file']}", output_dir=str(bad), hash_val=entry["sha256"],
                             hash_type=entry["hash_type"], progress=False)
    with pytest.raises(HashCheckError):
        download_url(f"{server}/tampered/{entry['file']}", filepath=str(bad / "pneumonia_cls.zip"),
                     hash_val=entry["sha256"], hash_type="sha256", progress=False)
    assert not (bad / "pneumonia_cls").exists() and not (bad / "pneumonia_cls.zip").exists()


def _zip(path, entries):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def _index(folder, name, file):
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256((folder / file).read_bytes()).hexdigest()
    index = {"bundles": [{"name": name, "version": VERSION, "file": file, "sha256": digest, "hash_type": "sha256"}]}
    (folder / "index.json").write_text(json.dumps(index))
    return folder / "index.json"


def test_the_checked_download_installs_a_verified_release(release, server, tmp_path):
    """Issue #22: one command checks the index's sha256 before extracting and moves the bundle into place whole."""
    from dcl_cstp_ext.download import download_bundle

    bundles = tmp_path / "bundles"
    root = download_bundle("kvasir_seg", f"{server}/dist/index.json", bundles)
    assert root == bundles / "kvasir_seg" and (root / "models" / "model.pt").is_file()
    assert sorted(p.name for p in bundles.iterdir()) == ["kvasir_seg"]  # no temporary folder left
    with pytest.raises(DownloadError, match="exists: pass --overwrite"):
        download_bundle("kvasir_seg", f"{server}/dist/index.json", bundles)
    (root / "marker").write_text("old copy")
    download_bundle("kvasir_seg", str(release["dist"] / "index.json"), bundles, overwrite=True)  # a local index
    assert not (root / "marker").exists()
    with pytest.raises(DownloadError, match="no bundle isic_seg .it lists kvasir_seg"):
        download_bundle("isic_seg", f"{server}/dist/index.json", bundles)


def test_the_checked_download_refuses_a_tampered_release_and_writes_nothing(release, server, tmp_path):
    from dcl_cstp_ext.download import download_bundle

    entry = {e["name"]: e for e in json.loads((release["dist"] / "index.json").read_text())["bundles"]}["pneumonia_cls"]
    tampered = tmp_path / "served"
    tampered.mkdir()
    data = bytearray((release["dist"] / entry["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tampered / entry["file"]).write_bytes(bytes(data))
    (tampered / "index.json").write_text(json.dumps({"bundles": [entry]}))  # the release's own checksum
    bundles = tmp_path / "bundles"
    with pytest.raises(DownloadError, match="differs from the index's"):
        download_bundle("pneumonia_cls", str(tampered / "index.json"), bundles)
    assert list(bundles.iterdir()) == []


def test_the_checked_download_refuses_unsafe_or_damaged_zips_before_writing(tmp_path):
    from dcl_cstp_ext.download import download_bundle

    meta = {"kvasir_seg/configs/metadata.json": "{}"}
    cases = {
        "climbs.zip": ({**meta, "kvasir_seg/../../evil.txt": "x"}, "unsafe path"),
        "absolute.zip": ({**meta, "/tmp/evil.txt": "x"}, "unsafe path"),
        "outside.zip": ({**meta, "other/file.txt": "x"}, "lies outside the bundle folder"),
    }
    for file, (entries, message) in cases.items():
        served = tmp_path / file.removesuffix(".zip")
        served.mkdir()
        _zip(served / file, entries)
        bundles = tmp_path / f"bundles_{served.name}"
        with pytest.raises(DownloadError, match=message):
            download_bundle("kvasir_seg", str(_index(served, "kvasir_seg", file)), bundles)
        assert list(bundles.iterdir()) == [] and not (tmp_path / "evil.txt").exists()

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    data = bytearray(_zip(damaged / "d.zip", {**meta, "kvasir_seg/models/model.pt": "w" * 4000}).read_bytes())
    at = data.index(b"w" * 100)
    data[at + 10] ^= 0x01  # one stored byte: the CRC no longer matches
    (damaged / "d.zip").write_bytes(bytes(data))
    bundles = tmp_path / "bundles_damaged"
    with pytest.raises(DownloadError, match=r"kvasir_seg/models/model\.pt is damaged \(CRC\)"):
        download_bundle("kvasir_seg", str(_index(damaged, "kvasir_seg", "d.zip")), bundles)
    assert list(bundles.iterdir()) == []


def _bundle_with_weights(tmp_path, state, meta):
    src = tmp_path / "bundles"
    shutil.copytree(BUNDLES / "kvasir_seg", src / "kvasir_seg", ignore=shutil.ignore_patterns("models", "eval"))
    (src / "kvasir_seg" / "models").mkdir()
    save_export(src / "kvasir_seg" / "models" / "model.pt", state, meta)
    return src


def test_packaging_sets_the_configs_to_the_weights_so_monai_load_gets_every_variable(tmp_path, caplog, monkeypatch):
    """The issue's case: a cpu-preset model (ResNet-18, 128 px) in a bundle whose defaults say ResNet-50, 256 px.
    Packaged, the zipped configs say ResNet-18 / 128, and ``monai.bundle.load`` with the bundle's default workflow
    (train.json) builds the network that takes every variable of the weights."""
    import logging

    from monai.bundle import load

    torch.manual_seed(0)
    net = FlexibleUNet(3, 1, "resnet18", spatial_dims=2)
    src = _bundle_with_weights(tmp_path, net.state_dict(),
                               {"backbone": "resnet18", "in_channels": 3, "out_channels": 1, "image_size": 128})
    dist = tmp_path / "dist"
    index = package_bundles(dist, ["kvasir_seg"], bundles_dir=src, python_package=False)
    changes = index["bundles"][0]["changes"]
    assert "configs/train.json: backbone 'resnet50' -> 'resnet18'" in changes
    assert "configs/train.json: image_size 256 -> 128" in changes
    assert "configs/inference.json: default_settings#backbone 'resnet50' -> 'resnet18'" in changes
    source = json.loads((src / "kvasir_seg" / "configs" / "train.json").read_text())
    assert source["backbone"] == "resnet50"  # the source bundle is untouched
    with zipfile.ZipFile(dist / f"kvasir_seg_v{VERSION}.zip") as zf:
        zf.extractall(tmp_path / "installed")
        large = zf.read("kvasir_seg/large_files.yml").decode()
    assert f'url: "kvasir_seg_v{VERSION}_model.pt"' in large
    assert f'hash_val: "{index["bundles"][0]["large_files"][0]["sha256"]}"' in large
    released = tmp_path / "installed" / "kvasir_seg" / "models"
    assert set(torch.load(released / "model.pt", weights_only=True)) == set(net.state_dict())  # bare, as the zoo's
    assert json.loads((released / "model.meta.json").read_text())["backbone"] == "resnet18"
    assert read_export(released / "model.pt")[1]["image_size"] == 128  # the project's readers find the meta
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with caplog.at_level(logging.INFO):
        loaded = load(name="kvasir_seg", bundle_dir=str(tmp_path / "installed"), device="cpu",
                      progress=False)  # workflow_type "train": configs/train.json builds network_def
    assert not any((tmp_path / "cwd").iterdir())  # loading is not a run: no run record in the user's folder
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in net.parameters())
    for k, v in net.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    n = len(net.state_dict())
    assert any(f"{n} of {n} variables" in r.getMessage() for r in caplog.records)


def test_packaging_refuses_weights_that_do_not_fit_and_writes_nothing(tmp_path):
    state = FlexibleUNet(3, 1, "resnet34", spatial_dims=2).state_dict()  # but the meta says resnet18
    src = _bundle_with_weights(tmp_path, state, {"backbone": "resnet18", "in_channels": 3, "out_channels": 1})
    with pytest.raises(WeightsMismatch, match="kvasir_seg: models/model.pt does not fit the network_def"):
        package_bundles(tmp_path / "dist", ["kvasir_seg"], bundles_dir=src, python_package=False)
    assert not (tmp_path / "dist").exists() or not any((tmp_path / "dist").iterdir())


def test_package_builds_the_python_package_the_bundles_need(tmp_path):
    """``dcl-cstp package`` also builds the dcl-cstp wheel and sdist (what ``required_packages_source`` names),
    listed with their sha256 in index.json and SHA256SUMS; the wheel holds the package."""
    dist = tmp_path / "dist"
    src = tmp_path / "bundles"
    shutil.copytree(BUNDLES / "pneumonia_cls", src / "pneumonia_cls", ignore=shutil.ignore_patterns("models", "eval"))
    CLI().package(out=str(dist), bundles="pneumonia_cls", bundles_dir=str(src))
    index = json.loads((dist / "index.json").read_text())
    files = {f["file"]: f for f in index["python_package"]}
    wheel, sdist = "dcl_cstp-0.1.0-py3-none-any.whl", "dcl_cstp-0.1.0.tar.gz"
    assert set(files) == {wheel, sdist}
    sums = (dist / "SHA256SUMS").read_text()
    for name, f in files.items():
        assert f["sha256"] == hashlib.sha256((dist / name).read_bytes()).hexdigest()
        assert f"{f['sha256']}  {name}" in sums
    with zipfile.ZipFile(dist / wheel) as zf:
        assert {"dcl_cstp_ext/__init__.py", "dcl_cstp_ext/release.py"} <= set(zf.namelist())
    meta = json.loads((src / "pneumonia_cls" / "configs" / "metadata.json").read_text())
    assert meta["required_packages_version"]["dcl-cstp"] == "0.1.0" and wheel.split("-")[1] == "0.1.0"
    assert "dcl_cstp-0.1.0-py3-none-any.whl" in meta["required_packages_source"]["dcl-cstp"]
    assert not (BUNDLES.parent / "build").exists()  # the build ran in a temporary copy


def test_a_cpu_preset_encoder_release_describes_its_embedding(tmp_path):
    """dcl_pretrain with a ResNet-18 encoder at 128 px (the cpu preset): the released metadata says 512 channels
    out and 128 px in, and MONAI's verify_net_in_out (the zoo's full check) passes on the extracted bundle."""
    from monai.bundle import verify_net_in_out

    from dcl_cstp_ext.networks import PooledResNetEncoder2D

    src = tmp_path / "bundles"
    shutil.copytree(BUNDLES / "dcl_pretrain", src / "dcl_pretrain", ignore=shutil.ignore_patterns("models", "eval"))
    (src / "dcl_pretrain" / "models").mkdir()
    save_export(src / "dcl_pretrain" / "models" / "encoder.pt", PooledResNetEncoder2D("resnet18", 3).state_dict(),
                {"backbone": "resnet18", "in_channels": 3, "image_size": 128})
    index = package_bundles(tmp_path / "dist", ["dcl_pretrain"], bundles_dir=src, python_package=False)
    assert "configs/metadata.json: network_data_format#outputs#pred#num_channels 2048 -> 512" in index["bundles"][0][
        "changes"]
    with zipfile.ZipFile(tmp_path / "dist" / f"dcl_pretrain_v{VERSION}.zip") as zf:
        zf.extractall(tmp_path / "installed")
    root = tmp_path / "installed" / "dcl_pretrain"
    fmt = json.loads((root / "configs" / "metadata.json").read_text())["network_data_format"]
    assert fmt["inputs"]["image"]["spatial_shape"] == [128, 128] and fmt["outputs"]["pred"]["num_channels"] == 512
    verify_net_in_out(net_id="network_def", meta_file=str(root / "configs" / "metadata.json"),
                      config_file=str(root / "configs" / "inference.json"), bundle_root=str(root), device="cpu")
