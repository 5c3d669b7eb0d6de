"""``dcl-cstp`` command line (python-fire).

    dcl-cstp make-demo-data --out DIR [--seed 0]
    dcl-cstp bench pretrain --methods dcl_cstp,simsiam,mocov2,simclr --backbone resnet18 --image-size 64 \
        --batch-size 16 --steps 10 --json out.json
"""

from __future__ import annotations

import fire

__all__ = ["main"]


class Bench:
    """Benchmarks."""

    def pretrain(self, methods="dcl_cstp,simsiam,mocov2,simclr", backbone="resnet18", image_size=64,
                 batch_size=16, steps=10, warmup=2, channels=3, device=None, amp=None, channels_last=False,
                 queue_size=4096, seed=0, threads=None, json=None):
        """Images/s and peak memory of a training step per method, and each method's ratio to SimSiam."""
        from .bench.pretrain import bench_pretrain

        bench_pretrain(methods=methods, backbone=backbone, image_size=image_size, batch_size=batch_size,
                       steps=steps, warmup=warmup, channels=channels, device=device, amp=amp,
                       channels_last=channels_last, queue_size=queue_size, seed=seed, threads=threads,
                       json_path=json)


class CLI:
    """DCL-CsTP: latent-diffusion synthesis, dual-stream contrastive pre-training, fine-tuning (MONAI bundles)."""

    def __init__(self) -> None:
        self.bench = Bench()

    def make_demo_data(self, out: str, seed: int = 0):
        """Write the built-in procedurally generated data sets (COVID-19 Radiography, ISIC 2018 and Kvasir-SEG
        layouts) under ``out``."""
        from .data.demo_data import make_demo_data

        roots = make_demo_data(out, seed=seed)
        for name, path in roots.items():
            print(f"{name}: {path}")

    def demo(self):
        """The main job (three-stage pipeline on the built-in data ending in a report): not implemented yet."""
        raise SystemExit(
            "dcl-cstp demo: the three-stage pipeline is not there yet (see README, 'Status'). "
            "Available now: `dcl-cstp make-demo-data --out DIR` and `dcl-cstp bench pretrain`."
        )


def main() -> None:
    fire.Fire(CLI, name="dcl-cstp")


if __name__ == "__main__":
    main()
