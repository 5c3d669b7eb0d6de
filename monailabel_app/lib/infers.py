"""MONAI Label infer tasks for this collection's 2-D bundles.

``BundleInferTask`` (MONAI Label 0.8.5) reads ``configs/inference.json``, ``configs/metadata.json`` and
``models/model.pt`` of a bundle. This subclass fixes what it gets wrong for 2-D PNG / JPEG bundles:

- the task type is given (``classification`` / ``segmentation``), never guessed from the folder name;
- a classifier's labels are the class names stored in its checkpoint (``model.pt["meta"]``), which may differ
  from the metadata's (a model trained on the 2- or 3-class pediatric set);
- the label of a segmentation is written as an 8-bit PNG at the image's own size holding 0 (background)
  and 255 (foreground), as the bundles' ground truth and their own inference output (MONAI Label's default
  writer would write it with the image's extension, e.g. a lossy ``.jpg``);
- a classification returns the class probabilities as JSON (no label file);
- overrides of ``inference.json`` ids can be given (a model trained with ``--backbone resnet18``);
- the metadata is read as `_meta_` too, as `python -m monai.bundle run` does (pneumonia_cls refers to it);
- the weights load strictly: a checkpoint that does not fit the network is an error, not a half-random model.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

import numpy as np
import torch
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.bundle import BundleInferTask
from PIL import Image

logger = logging.getLogger(__name__)

# The bundles served and their MONAI Label task types.
BUNDLE_TYPES: dict[str, str] = {
    "pneumonia_cls": InferType.CLASSIFICATION,
    "kvasir_seg": InferType.SEGMENTATION,
    "isic_seg": InferType.SEGMENTATION,
}

MASK_FOREGROUND = 255  # pixel value of the foreground in the PNG labels (background: 0)
RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS"  # models/<this> marks untrained demo weights (see prepare.py)


def segmentation_labels(metadata_file: str, default):
    """``{name: value}`` of the labels in the written mask: ``post_processed_outputs.pred.channel_def`` of the
    bundle's metadata (format ``labels``), background left out; ``default`` when the metadata has none."""
    with open(metadata_file) as fp:
        post = json.load(fp)["network_data_format"].get("post_processed_outputs", {})
    defs = next(iter(post.values()), {}).get("channel_def", {})
    labels = {str(v).lower(): int(k) for k, v in defs.items() if str(v).lower() != "background"}
    return labels or default


class Bundle2DInferTask(BundleInferTask):
    """A 2-D bundle of this collection served by MONAI Label, ``type`` classification or segmentation."""

    def __init__(self, path: str, conf: dict[str, str], type: str, overrides: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        """``overrides``: config ids of ``inference.json`` and their values (``{"backbone": "resnet18"}``), as
        ``python -m monai.bundle run ... --backbone resnet18`` would take them."""
        self.overrides = dict(overrides or {})
        if type not in (InferType.CLASSIFICATION, InferType.SEGMENTATION):
            raise ValueError(f"type must be classification or segmentation, got {type!r}")
        classification = type == InferType.CLASSIFICATION
        kwargs.setdefault("load_strict", True)
        # MONAI Label's Restored resizes a spatial prediction back to the image; class scores have no size.
        kwargs.setdefault("add_post_restore", not classification)
        super().__init__(os.path.abspath(path), conf, type=type, **kwargs)
        if not self.valid:
            return
        if classification:
            # the checkpoint's class names (inference.json reads them from model.pt["meta"])
            names = self.bundle_config.get_parsed_content("class_names")
            self.labels = {str(name): i for i, name in enumerate(names)}
        else:
            # the mask's values: the metadata's post-processed output (its network output is one logit channel)
            self.labels = segmentation_labels(os.path.join(self.bundle_path, "configs", self.const.metadata_json()),
                                              self.labels)
        if os.path.exists(os.path.join(self.bundle_path, "models", RANDOM_WEIGHTS_MARKER)):
            logger.warning("%s: models/model.pt holds untrained random weights (demo only)", self.bundle_path)
            self.description = f"[UNTRAINED DEMO WEIGHTS] {self.description}"

    def _load_bundle_config(self, path, config):
        # MONAI Label parses inference.json alone; `python -m monai.bundle run` also reads the metadata as
        # `_meta_`, which pneumonia_cls refers to (its default class names are the metadata's channel_def).
        bundle_config = super()._load_bundle_config(path, config)
        meta = os.path.join(path, "configs", self.const.metadata_json())
        if os.path.exists(meta):
            bundle_config.read_meta(meta)
        for key, value in self.overrides.items():
            bundle_config[key] = value
        if self.overrides:
            logger.info("%s: inference.json overrides %s", os.path.basename(path), self.overrides)
        return bundle_config

    def writer(self, data: dict[str, Any], extension=None, dtype=None) -> tuple[Any, Any]:
        pred = data[self.output_label_key]
        pred = pred.as_tensor() if hasattr(pred, "as_tensor") else torch.as_tensor(pred)
        pred = pred.detach().float().cpu()
        if self.type == InferType.CLASSIFICATION:
            return None, self._classification_result(pred)
        return self._write_mask(pred, data)

    def _classification_result(self, probs: torch.Tensor) -> dict[str, Any]:
        scores = probs.reshape(-1).tolist()
        names = {i: name for name, i in self.labels.items()}
        prediction = [{"idx": i, "label": names.get(i, f"label_{i}"), "score": float(s)} for i, s in enumerate(scores)]
        best = max(prediction, key=lambda p: p["score"])
        # "prediction" is the layout of MONAI Label's ClassificationWriter; the rest is a shortcut for clients.
        return {
            "prediction": prediction,
            "class_index": best["idx"],
            "class_name": best["label"],
            "probabilities": {p["label"]: p["score"] for p in prediction},
        }

    def _write_mask(self, pred: torch.Tensor, data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if pred.ndim == 3:  # (C, H, W): one foreground channel, or one channel per label with the background
            pred = pred[0] if pred.shape[0] == 1 else pred.argmax(0).float()
        if pred.ndim != 2:
            raise ValueError(f"expected a 2-D prediction (C, H, W) or (H, W), got shape {tuple(pred.shape)}")
        values = sorted(self.labels.values()) if isinstance(self.labels, dict) else [1]
        if len(values) <= 1:  # binary: 0 / 255 (threshold 0.5 in case the postprocessing left probabilities)
            mask = np.where(pred.numpy() >= 0.5, MASK_FOREGROUND, 0).astype(np.uint8)
            mask_values = {"background": 0, **{name: MASK_FOREGROUND for name in (self.labels or {"foreground": 1})}}
        else:  # several labels: the label indices themselves
            mask = pred.round().clamp(0, 255).numpy().astype(np.uint8)
            mask_values = {"background": 0, **dict(self.labels)}
        fd, path = tempfile.mkstemp(suffix=".png", prefix="monailabel_")
        os.close(fd)
        Image.fromarray(mask).save(path)
        height, width = mask.shape
        return path, {"mask_values": mask_values, "width": width, "height": height}
