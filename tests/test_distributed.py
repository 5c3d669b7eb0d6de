"""Opening and closing a torchrun job's process group (the ``initialize`` / ``finalize`` of every
multi_gpu_train*.json)."""

import json
import socket
from pathlib import Path

import torch.distributed as dist

from dcl_cstp_ext.engines import close_process_group, open_process_group

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def test_close_process_group_waits_then_destroys(tmp_path):
    assert close_process_group() is False  # nothing to close outside torchrun
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert close_process_group() is True
    assert not dist.is_initialized()


def test_open_process_group_joins_torchruns_group_once(monkeypatch):
    with socket.socket() as s:  # a free port for the env:// rendezvous torchrun would set up
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    try:
        assert open_process_group("cpu") is True
        assert dist.is_initialized() and dist.get_backend() == "gloo" and dist.get_world_size() == 1
        assert open_process_group("cpu") is False  # already joined: left as it is
    finally:
        close_process_group()


def test_every_multi_gpu_config_opens_and_closes_through_the_helpers():
    configs = sorted(BUNDLES.glob("*/configs/multi_gpu_train*.json"))
    assert len(configs) == 6
    for path in configs:
        config = json.loads(path.read_text())
        assert "$dcl_cstp_ext.engines.open_process_group(@device)" in config["initialize"], path
        assert not any("init_process_group" in line for line in config["initialize"]), path
        assert config["finalize"][-1] == "$dcl_cstp_ext.engines.close_process_group()", path
