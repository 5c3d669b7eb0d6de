"""Clean shutdown of a torchrun job (the ``finalize`` of every multi_gpu_train.json)."""

import json
from pathlib import Path

import torch.distributed as dist

from dcl_cstp_ext.engines import close_process_group

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def test_close_process_group_waits_then_destroys(tmp_path):
    assert close_process_group() is False  # nothing to close outside torchrun
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert close_process_group() is True
    assert not dist.is_initialized()


def test_every_multi_gpu_config_closes_through_the_barrier():
    configs = sorted(BUNDLES.glob("*/configs/multi_gpu_train*.json"))
    assert len(configs) == 6
    for path in configs:
        finalize = json.loads(path.read_text())["finalize"]
        assert finalize[-1] == "$dcl_cstp_ext.engines.close_process_group()", path
