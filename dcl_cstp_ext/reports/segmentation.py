"""The segmentation report of an evaluation: per-image metrics (CSV), their summary (JSON) and the worst and
best cases as pictures."""

from __future__ import annotations

import csv
import heapq
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from ..data.formats import image_stem
from ..engines.outputs import per_image_items, source_filename
from ..metrics.segmentation import METRIC_NAMES, binary_mask, segmentation_metrics, summarize
from .overlay import overlay_mask, to_rgb_uint8

__all__ = ["SegmentationReport", "save_case_figure", "save_cases_montage"]

logger = logging.getLogger(__name__)


def save_case_figure(path: str | Path, image: Any, gt: Any, pred: Any, title: str = "") -> None:
    """Three panels: image | ground truth (green) | prediction (red) with the ground-truth outline (matplotlib,
    Agg canvas; the global pyplot backend is not touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rgb = to_rgb_uint8(image)
    panels = [
        (rgb, "image"),
        (overlay_mask(rgb, gt, color=(40, 220, 40)), "ground truth"),
        (overlay_mask(rgb, pred, contour=gt, contour_color=(40, 220, 40)), "prediction (red), truth outline (green)"),
    ]
    fig = Figure(figsize=(10.5, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    for i, (arr, name) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(arr)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def save_cases_montage(path: str | Path, rows: Sequence[tuple[str, Sequence[tuple]]], thumb: int = 128) -> None:
    """One small picture of several cases: ``rows`` is ``[(row title, [(rgb (H, W, 3) uint8, gt, pred, caption),
    ...]), ...]``; each case is one ``thumb``-pixel panel, the prediction in red over the image with the ground
    truth outlined in green, captioned (e.g. with its Dice). Empty rows are left out."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [(name, cases) for name, cases in rows if cases]
    if not rows:
        return
    ncol = max(len(cases) for _, cases in rows)
    inch = thumb / 100
    fig = Figure(figsize=(ncol * inch + 0.9, len(rows) * (inch + 0.3)), dpi=100)
    FigureCanvasAgg(fig)
    for r, (name, cases) in enumerate(rows):
        for c, (rgb, gt, pred, caption) in enumerate(cases):
            ax = fig.add_subplot(len(rows), ncol, r * ncol + c + 1)
            ax.imshow(overlay_mask(rgb, pred, contour=gt, contour_color=(40, 220, 40)))
            ax.set_title(caption, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout(pad=0.3, h_pad=1.2)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


class SegmentationReport:
    """Evaluation report of a MONAI ``SupervisedEvaluator`` whose postprocessing yields binary ``pred`` masks.

    Per image (at the size the evaluator sees): :func:`segmentation_metrics`. At the end of the run, in
    ``output_dir``: ``metrics_per_image.csv`` (image, label, dice, iou, hd, hd95, gt_area, pred_area),
    ``metrics.json`` (``n``, ``split``, ``image_size``, per metric mean / std / median / min / max, the empty-mask
    policy), ``worst_cases/NN_<image>.png`` for the ``num_worst`` images of lowest Dice (ties: larger HD) and
    ``best_cases/NN_<image>.png`` for the ``num_best`` of highest Dice (ties: smaller HD): image | ground truth |
    prediction, and ``cases.png``, both sets as small thumbnails in one picture (:func:`save_cases_montage`).
    Single process (the evaluate workflow is not distributed).
    """

    def __init__(
        self,
        output_dir: str,
        num_worst: int = 8,
        split: str | None = None,
        image_size: Any = None,
        image_key: str = "image",
        label_key: str = "label",
        pred_key: str = "pred",
        num_best: int = 4,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.num_worst = int(num_worst)
        self.num_best = int(num_best)
        self.split = split
        self.image_size = image_size
        self.keys = (image_key, label_key, pred_key)
        self.rows: list[dict] = []
        self._worst: list[tuple] = []
        self._best: list[tuple] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _reset(self, engine: Engine | None = None) -> None:
        self.rows, self._worst, self._best = [], [], []

    def _collect(self, engine: Engine) -> None:
        ik, lk, pk = self.keys
        for item in per_image_items(engine.state.output):
            image, label, pred = item[ik], item[lk], item[pk]
            row = {"image": source_filename(image, default=f"#{len(self.rows)}"), "label": source_filename(label),
                   **segmentation_metrics(pred, label)}
            self.rows.append(row)
            idx = len(self.rows) - 1
            # min-heaps: the root is the least extreme of the kept cases (badness (-dice, hd); goodness (dice, -hd))
            for heap, size, key in ((self._worst, self.num_worst, (-row["dice"], row["hd"], -idx)),
                                    (self._best, self.num_best, (row["dice"], -row["hd"], -idx))):
                if size <= 0 or (len(heap) >= size and key <= heap[0][0]):
                    continue
                entry = (key, idx, to_rgb_uint8(image), binary_mask(label), binary_mask(pred))
                (heapq.heappush if len(heap) < size else heapq.heapreplace)(heap, entry)

    def write(self, engine: Engine | None = None) -> dict:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        fields = ["image", "label", *METRIC_NAMES, "gt_area", "pred_area"]
        with open(self.output_dir / "metrics_per_image.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            for r in self.rows:
                writer.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in fields})
        size = self.image_size
        summary = {
            "n": len(self.rows),
            "split": self.split,
            "image_size": list(size) if isinstance(size, (list, tuple)) else size,
            **summarize(self.rows),
            "empty_masks": "both empty: Dice=IoU=1, HD=HD95=0; one empty: Dice=IoU=0, HD=HD95=image diagonal",
            "hd_units": "pixels at the evaluated size",
        }
        (self.output_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
        montage = []
        for name, heap in (("worst", self._worst), ("best", self._best)):
            case_dir = self.output_dir / f"{name}_cases"
            for old in case_dir.glob("*.png") if case_dir.is_dir() else []:
                old.unlink()
            cases = []
            for rank, (_key, idx, rgb, gt, pred) in enumerate(sorted(heap, reverse=True), start=1):
                r = self.rows[idx]
                stem = image_stem(r["image"])
                title = f"{stem}: Dice {r['dice']:.3f}  IoU {r['iou']:.3f}  HD {r['hd']:.1f}  HD95 {r['hd95']:.1f}"
                save_case_figure(case_dir / f"{rank:02d}_{stem}.png", rgb.transpose(2, 0, 1) / 255.0, gt, pred, title)
                cases.append((rgb, gt, pred, f"Dice {r['dice']:.2f}"))
            montage.append((f"{name} {len(cases)}", cases))
        save_cases_montage(self.output_dir / "cases.png", montage)
        logger.info(
            "evaluated %d images (%s): Dice %.4f IoU %.4f HD %.2f HD95 %.2f -> %s",
            summary["n"], self.split, summary["dice"]["mean"], summary["iou"]["mean"], summary["hd"]["mean"],
            summary["hd95"]["mean"], self.output_dir,
        )
        return summary
