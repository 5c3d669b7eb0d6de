"""The reference row of issue #20: the naive plain-MONAI script a new user would write, on the bundles' own split.

Segmentation (Kvasir-SEG, ISIC 2018): ``FlexibleUNet(backbone="resnet18", pretrained=False)`` at 128 px,
``DiceCELoss(sigmoid=True, jaccard=True)``, AdamW lr 1e-3 (weight decay 1e-5), batch 16, random horizontal and
vertical flips only, constant lr, trained for a wall-clock budget; Dice (threshold 0.5) of the final model.
Classification (pediatric chest X-rays, 3 classes): a plain MONAI ResNet-18 (1 channel, 128 px), cross-entropy,
the same optimiser, horizontal flips; accuracy of the final model.

The training and validation items are the bundles' own seeded split (``build_datalist``, seed 0, 20% validation),
so the row is comparable with the bundles' validation figures. Nothing here uses ``dcl_cstp_ext`` beyond reading
that split. Example (2 threads, the 2-core machine)::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/plain_monai_baseline.py --task kvasir_seg \\
        --data-root ../shared/data/kvasir-seg --minutes 25 --json-path benchmarks/results/plain_kvasir_seg.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import monai
import torch
from monai.data import CacheDataset, DataLoader
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.nets import FlexibleUNet, resnet18
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    Lambdad,
    LoadImaged,
    RandFlipd,
    Resized,
    ScaleIntensityd,
)

from dcl_cstp_ext.data import build_datalist

TASKS = {  # task -> (datalist name, datalist options, kind)
    "kvasir_seg": ("kvasir_seg", {}, "seg"),
    "isic_seg": ("isic2018", {}, "seg"),
    "pneumonia_cls": ("pediatric_cxr", {"num_classes": 3}, "cls"),
}


def transforms(kind: str, size: int) -> tuple[Compose, Compose]:
    """(deterministic, random) transforms: load, channel-first, resize, [0, 1]; then flips."""
    if kind == "seg":
        keys = ["image", "label"]
        base = Compose([
            LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys),
            Lambdad("label", lambda m: (m[:1] > 127).float()),
            Resized(keys, (size, size), mode=("bilinear", "nearest")),
            ScaleIntensityd("image"), EnsureTyped(keys, track_meta=False),
        ])
        return base, Compose([RandFlipd(keys, 0.5, 0), RandFlipd(keys, 0.5, 1)])
    base = Compose([
        LoadImaged("image", image_only=True, ensure_channel_first=True),
        Lambdad("image", lambda x: x[:1]), Resized("image", (size, size)), ScaleIntensityd("image"),
        EnsureTyped("image", track_meta=False),
    ])
    return base, Compose([RandFlipd("image", 0.5, 1)])


def evaluate(net: torch.nn.Module, loader: DataLoader, kind: str) -> float:
    """Mean Dice (seg, threshold 0.5, empty masks counted) or accuracy (cls) of ``net`` on ``loader``."""
    net.eval()
    dice, correct, total = DiceMetric(include_background=True, ignore_empty=False), 0, 0
    with torch.no_grad():
        for batch in loader:
            out = net(batch["image"])
            if kind == "seg":
                dice((torch.sigmoid(out) > 0.5).float(), batch["label"])
            else:
                correct += int((out.argmax(1) == batch["label"]).sum())
                total += len(out)
    net.train()
    return float(dice.aggregate()) if kind == "seg" else correct / total


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--data-root", required=True)
    ap.add_argument("--minutes", type=float, default=25.0, help="training wall-clock budget (ends after an epoch)")
    ap.add_argument("--max-epochs", type=int, default=10_000)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-path", default=None)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    monai.utils.set_determinism(args.seed)
    name, options, kind = TASKS[args.task]
    dl = build_datalist(name, args.data_root, seed=0, split_file=None, val_fraction=0.2, options=options)
    base, rand = transforms(kind, args.image_size)
    train_ds = CacheDataset(dl["training"], Compose([*base.transforms, *rand.transforms]), num_workers=args.threads)
    val_ds = CacheDataset(dl["validation"], base, num_workers=args.threads)
    train_loader = DataLoader(train_ds, batch_size=16, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_ds, batch_size=32)
    if kind == "seg":
        net = FlexibleUNet(in_channels=3, out_channels=1, backbone="resnet18", pretrained=False, spatial_dims=2)
        loss_fn = DiceCELoss(sigmoid=True, jaccard=True)
    else:
        net = resnet18(spatial_dims=2, n_input_channels=1, num_classes=3)
        loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)

    start, epochs, losses = time.perf_counter(), 0, []
    while epochs < args.max_epochs and time.perf_counter() - start < args.minutes * 60:
        total = 0.0
        for batch in train_loader:
            opt.zero_grad()
            loss = loss_fn(net(batch["image"]), batch["label"])
            loss.backward()
            opt.step()
            total += loss.item()
        epochs += 1
        losses.append(total / len(train_loader))
        print(f"epoch {epochs} loss {losses[-1]:.4f} {time.perf_counter() - start:.0f} s", flush=True)
    train_s = time.perf_counter() - start
    score = evaluate(net, val_loader, kind)
    result = {
        "task": args.task, "metric": "val_mean_dice" if kind == "seg" else "val_accuracy", "value": score,
        "epochs": epochs, "train_seconds": round(train_s, 1), "epoch_losses": losses,
        "n_train": len(train_ds), "n_val": len(val_ds), "threads": args.threads, "image_size": args.image_size,
        "seed": args.seed, "torch": torch.__version__, "monai": monai.__version__, "python": platform.python_version(),
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads",
    }
    print(json.dumps({k: v for k, v in result.items() if k != "epoch_losses"}))
    if args.json_path:
        Path(args.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_path).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
