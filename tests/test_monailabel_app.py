"""The MONAI Label app (monailabel_app/) served for real by MONAI Label 0.8.5 from its own environment
(.venv-label, made by `make label-setup`): /info/ lists the three bundles with the right task types, and
/infer/ answers a PNG mask at the image's size for kvasir_seg and class probabilities for pneumonia_cls.

The bundles are temporary copies with freshly initialised tiny weights (ResNet-18, 64 px); the studies
folder holds built-in demo images. Skipped when .venv-label/bin/monailabel is absent. Only the standard
library talks to the server."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from conftest import REPO

LABEL_VENV = REPO / ".venv-label"
MONAILABEL = LABEL_VENV / "bin" / "monailabel"
STARTUP_TIMEOUT = 180  # s until /info/ answers
REQUEST_TIMEOUT = 120  # s for one request

pytestmark = pytest.mark.skipif(
    not MONAILABEL.is_file(),
    reason=f"MONAI Label is not installed in {LABEL_VENV} (run `make label-setup` to build it)",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET", timeout: float = REQUEST_TIMEOUT) -> tuple[int, dict, bytes]:
    body = b"" if method == "POST" else None
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


def _label_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(PATH=f"{LABEL_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(LABEL_VENV),
               MONAILABEL_PYEXE=str(LABEL_VENV / "bin" / "python"),  # the `monailabel` script runs `python` otherwise
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app copied to a temporary folder, served on a free port; yields its url and folders."""
    tmp = tmp_path_factory.mktemp("monailabel")
    app = tmp / "app"
    shutil.copytree(REPO / "monailabel_app", app, ignore=shutil.ignore_patterns("__pycache__"))
    env = _label_env()
    # demo studies + tiny random weights, made with the label environment's python (as `make label` does)
    prep = subprocess.run(
        [str(LABEL_VENV / "bin" / "python"), str(app / "prepare.py"), "--studies", str(tmp / "studies"),
         "--bundles-out", str(tmp / "bundles"), "--bundles-src", str(REPO / "bundles"), "--random", "--backbone", "resnet18", "--image-size", "64"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp,
    )
    assert prep.returncode == 0, prep.stdout + prep.stderr
    for model, image_id in SEGMENTATION_IMAGES.items():
        _balance_segmentation_head(tmp / "bundles" / model, tmp / "studies" / f"{image_id}.jpg")
    # kvasir_seg keeps the repository's inference.json (ResNet-50, 256 px): the server gets the tiny settings as
    # --conf overrides, as a user serving a model trained with --backbone resnet18 --image_size 64 would
    shutil.copyfile(REPO / "bundles" / "kvasir_seg" / "configs" / "inference.json",
                    tmp / "bundles" / "kvasir_seg" / "configs" / "inference.json")
    port = _free_port()
    log = open(tmp / "server.log", "w")
    cmd = [str(MONAILABEL), "start_server", "--app", str(app), "--studies", str(tmp / "studies"),
           "--host", "127.0.0.1", "--port", str(port), "--conf", "bundles", str(tmp / "bundles")]
    cmd += [a for model, kv in OVERRIDES.items() for k, v in kv.items() for a in ("--conf", f"{model}#{k}", str(v))]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{(tmp / 'server.log').read_text()[-4000:]}")
            try:
                status, _, _ = _request(f"{base}/info/", timeout=5)
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"/info/ not up in {STARTUP_TIMEOUT} s:\n{(tmp / 'server.log').read_text()[-4000:]}")
            time.sleep(1)
        yield {"url": base, "studies": tmp / "studies", "bundles": tmp / "bundles", "log": tmp / "server.log"}
    finally:
        try:  # the whole process group: monailabel starts uvicorn as a child
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def _server_log(server) -> str:
    return server["log"].read_text()[-4000:]


def _infer(server, model: str, image_id: str, output: str):
    url = f"{server['url']}/infer/{model}?image={urllib.parse.quote(image_id)}&output={output}"
    try:
        return _request(url, method="POST")
    except urllib.error.HTTPError as e:
        pytest.fail(f"{url}: {e}: {e.read()[:2000]!r}\n{_server_log(server)}")


SEGMENTATION_IMAGES = {"kvasir_seg": "demo0000", "isic_seg": "ISIC_0000000"}
OVERRIDES = {"kvasir_seg": {"backbone": "resnet18", "image_size": 64}}  # given to the server as --conf


def _bundle_pipeline(bundle_dir, overrides=None):
    """(network with the bundle's weights, preprocessing, postprocessing) of inference.json, in this process."""
    from monai.bundle import ConfigParser

    from dcl_cstp_ext.networks import read_export

    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / "inference.json"))
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle_dir)
    parser["device"] = "$torch.device('cpu')"
    for key, value in (overrides or {}).items():
        parser[key] = value
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(read_export(bundle_dir / "models" / "model.pt")[0])
    return net.eval(), parser.get_parsed_content("preprocessing"), parser.get_parsed_content("postprocessing")


def _balance_segmentation_head(bundle_dir, image):
    """Shift the random head's bias to the median logit on ``image``: about half of the mask is foreground,
    so that comparing masks checks orientation and resizing (a random network alone gives an all-ones mask)."""
    import torch

    net, pre, _ = _bundle_pipeline(bundle_dir)
    with torch.no_grad():
        logits = net(pre({"image": str(image)})["image"][None].as_tensor())
    state = {k: v.detach().clone().as_subclass(torch.Tensor) for k, v in net.state_dict().items()}
    state["segmentation_head.0.bias"] -= float(logits.median())
    torch.save(state, bundle_dir / "models" / "model.pt")


def _bundle_mask(bundle_dir, image, overrides=None):
    """The mask that the bundle's own inference.json pipeline (as `monai.bundle run` uses it) gives."""
    import torch

    net, pre, post = _bundle_pipeline(bundle_dir, overrides)
    d = pre({"image": str(image)})
    with torch.no_grad():
        d["pred"] = net(d["image"][None])[0]
    return post(d)["pred"][0].numpy() > 0.5


def test_info_lists_the_three_bundles_with_their_task_types(server):
    base = server["url"]
    status, _, body = _request(f"{base}/info/")
    assert status == 200
    models = json.loads(body)["models"]
    assert set(models) == {"pneumonia_cls", "kvasir_seg", "isic_seg"}, models.keys()
    assert models["pneumonia_cls"]["type"] == "classification"
    assert models["kvasir_seg"]["type"] == "segmentation" and models["isic_seg"]["type"] == "segmentation"
    for name in models:
        assert models[name]["dimension"] == 2
        assert "UNTRAINED" in models[name]["description"]  # the random demo weights are flagged
    # classifier labels: the class names stored in the checkpoint, in their order
    assert models["pneumonia_cls"]["labels"] == {"COVID": 0, "Lung_Opacity": 1, "Normal": 2, "Viral Pneumonia": 3}
    assert models["kvasir_seg"]["labels"] == {"polyp": 1}
    # the studies folder is the datastore
    _, _, body = _request(f"{base}/datastore/?output=all")
    assert {"demo0000", "COVID-1"} <= set(json.loads(body)["objects"])


@pytest.mark.parametrize("model, label", [("kvasir_seg", "polyp"), ("isic_seg", "lesion")])
def test_infer_segmentation_returns_a_png_mask_of_the_image_size(server, model, label):
    import numpy as np
    from PIL import Image

    image_id = SEGMENTATION_IMAGES[model]
    image = server["studies"] / f"{image_id}.jpg"  # RGB JPEG, not square (Kvasir-SEG / ISIC 2018 style)
    with Image.open(image) as im:
        size = im.size
    assert size[0] != size[1]
    status, headers, body = _infer(server, model, image_id, "image")
    assert status == 200 and headers.get("content-type", "").startswith("image/png"), headers
    with Image.open(io.BytesIO(body)) as png:
        assert png.format == "PNG" and png.mode == "L" and png.size == size
        mask = np.asarray(png)
    assert set(np.unique(mask)) == {0, 255}  # the balanced head gives both
    # the same mask as the bundle's own pipeline (same orientation, same resizing back), up to a few border pixels
    expected = _bundle_mask(server["bundles"] / model, image, OVERRIDES.get(model))
    assert expected.shape == mask.shape and 0.1 < expected.mean() < 0.9
    assert np.mean(expected != (mask == 255)) < 0.01
    status, _, body = _infer(server, model, image_id, "json")
    params = json.loads(body)
    assert params["mask_values"] == {"background": 0, label: 255}
    assert (params["width"], params["height"]) == size and params["label_names"] == {label: 1}


@pytest.mark.parametrize("image_id", ["COVID-1", "Viral_Pneumonia-1"])
def test_infer_classification_returns_class_probabilities(server, image_id):
    status, _, body = _infer(server, "pneumonia_cls", image_id, "json")  # grey 1-channel PNG
    assert status == 200
    result = json.loads(body)
    pred = result["prediction"]
    assert [p["label"] for p in pred] == ["COVID", "Lung_Opacity", "Normal", "Viral Pneumonia"]
    scores = [p["score"] for p in pred]
    assert all(0 <= s <= 1 for s in scores) and sum(scores) == pytest.approx(1, abs=1e-4)
    assert result["class_name"] == pred[max(range(4), key=scores.__getitem__)]["label"]
    assert result["probabilities"]["COVID"] == pytest.approx(scores[0])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
