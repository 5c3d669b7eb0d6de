"""Inference output of a segmentation bundle: binary masks at each input's own size, overlays and an index."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ignite.engine import Engine, Events

from ..data import read_image
from ..data.formats import image_stem, save_mask
from ..engines.outputs import per_image_items, source_filename
from ..metrics.segmentation import binary_mask
from .overlay import overlay_mask, to_rgb_uint8

__all__ = ["SegmentationWriter"]

logger = logging.getLogger(__name__)


class SegmentationWriter:
    """Inference output of a MONAI evaluator whose postprocessing yields binary ``pred`` masks already mapped back
    to each input's own size (``Invertd``).

    For each input ``<stem>.<ext>``: ``<output_dir>/masks/<stem>.png`` (uint8, 0 / 255, the input's height and
    width), or for a NIfTI input ``<output_dir>/masks/<stem>.nii.gz`` (uint8 0 / 1, stored like the input with
    its affine; :func:`~dcl_cstp_ext.data.formats.save_mask`), and, with ``overlay``,
    ``<output_dir>/overlays/<stem>.png`` (the input with the mask in red). Inputs below ``relative_to`` keep
    their sub-folders. ``predictions.csv`` lists input, mask and mask area fraction.
    """

    def __init__(
        self,
        output_dir: str,
        overlay: bool = True,
        relative_to: str | None = None,
        image_key: str = "image",
        pred_key: str = "pred",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.overlay = overlay
        self.relative_to = Path(relative_to).resolve() if relative_to and Path(relative_to).is_dir() else None
        self.image_key = image_key
        self.pred_key = pred_key
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write)
        engine.add_event_handler(Events.COMPLETED, self._write_index)

    def _relative(self, path: Path) -> Path:
        """Output path of ``path`` without extension: below ``relative_to`` as the input, else its bare stem."""
        if self.relative_to is not None:
            try:
                rel = path.resolve().relative_to(self.relative_to)
                return rel.parent / image_stem(rel)
            except ValueError:
                pass
        return Path(image_stem(path))

    def _write(self, engine: Engine) -> None:
        from PIL import Image

        for item in per_image_items(engine.state.output):
            src = Path(source_filename(item[self.image_key]))
            mask = binary_mask(item[self.pred_key])
            original = read_image(src)
            if mask.shape != original.shape[1:]:
                raise RuntimeError(f"{src}: mask {mask.shape} is not at the image's size {original.shape[1:]}")
            rel = self._relative(src)
            out = save_mask(mask, src, self.output_dir / "masks" / rel)
            row = {"image": str(src), "mask": str(out), "area_fraction": float(mask.mean())}
            if self.overlay:
                ov = self.output_dir / "overlays" / rel.parent / (rel.name + ".png")
                ov.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(overlay_mask(to_rgb_uint8(original), mask)).save(ov)
                row["overlay"] = str(ov)
            self.rows.append(row)

    def _write_index(self, engine: Engine) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / "predictions.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["image", "mask", "overlay", "area_fraction"])
            writer.writeheader()
            for r in self.rows:
                writer.writerow({k: r.get(k, "") for k in writer.fieldnames})
        logger.info("wrote %d masks to %s", len(self.rows), self.output_dir / "masks")
