"""The classification report of an evaluation: ``predictions.csv``, ``metrics.json`` and the confusion matrix as a
picture."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..engines.handlers import is_main_process
from ..engines.outputs import label_index, per_image_items, source_filename
from ..metrics.classification import classification_metrics
from ..utils import json_clean

__all__ = ["ClassificationReport", "plot_confusion_matrix"]

logger = logging.getLogger(__name__)


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save the confusion matrix as a PNG (matplotlib's Agg canvas, no display needed): counts in the cells,
    colour = fraction of the true class (row-normalised)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    n = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    size = 1.6 + 0.9 * n
    fig = Figure(figsize=(size + 1.2, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), labels=list(class_names), rotation=30, ha="right")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


class ClassificationReport:
    """Per-image predictions of a MONAI ``SupervisedEvaluator`` whose postprocessing yields class probabilities
    under ``prob_key`` (see :class:`ClassProbabilitiesd`), written at the end of the run into ``output_dir``:

    * ``predictions.csv``: ``file``, (with labels: ``label``, ``true_class``,) ``pred``, ``pred_class`` and one
      ``prob_<class>`` column per class; one row per image, in the order of the data;
    * with labels and ``metrics_name``: ``metrics.json`` (:func:`classification_metrics` plus ``split``,
      ``checkpoint`` and the policy for undefined values) and ``confusion_matrix.png``; the summary values also
      land in ``engine.state.metrics`` as ``report_<name>``.

    Single process (the evaluate and inference workflows are not distributed).
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        csv_name: str = "predictions.csv",
        metrics_name: str | None = "metrics.json",
        confusion_name: str | None = "confusion_matrix.png",
        split: str | None = None,
        extra: Mapping[str, Any] | None = None,
        prob_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = [str(c) for c in class_names]
        self.csv_name, self.metrics_name, self.confusion_name = csv_name, metrics_name, confusion_name
        self.split = split
        self.extra = dict(extra or {})
        self.keys = (prob_key, label_key, image_key)
        self.files: list[str] = []
        self.probs: list[np.ndarray] = []
        self.labels: list[int | None] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _reset(self, engine: Engine | None = None) -> None:
        self.files, self.probs, self.labels = [], [], []

    def _collect(self, engine: Engine) -> None:
        pk, lk, ik = self.keys
        items = per_image_items(engine.state.output)
        batch = engine.state.batch
        batch_items = per_image_items(batch) if isinstance(batch, (dict, list)) else [None] * len(items)
        for item, b in zip(items, batch_items):
            prob = torch.as_tensor(item[pk]).detach().float().cpu().reshape(-1).numpy()
            if prob.shape[0] != len(self.class_names):
                raise ValueError(f"{prob.shape[0]} probabilities for {len(self.class_names)} class names")
            self.probs.append(prob)
            self.labels.append(label_index(item.get(lk)))
            self.files.append(source_filename(item.get(ik), (b or {}).get(ik), default=f"#{len(self.files)}"))

    def write(self, engine: Engine | None = None) -> dict[str, Any] | None:
        if not is_main_process():
            return None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        names = self.class_names
        probs = np.stack(self.probs) if self.probs else np.zeros((0, len(names)))
        preds = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
        labelled = bool(self.labels) and all(lab is not None for lab in self.labels)
        fields = ["file", *(["label", "true_class"] if labelled else []), "pred", "pred_class",
                  *[f"prob_{n}" for n in names]]
        with open(self.output_dir / self.csv_name, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(fields)
            for i, f in enumerate(self.files):
                truth = [self.labels[i], names[self.labels[i]]] if labelled else []
                writer.writerow([f, *truth, int(preds[i]), names[preds[i]], *[f"{p:.6f}" for p in probs[i]]])
        logger.info("wrote %d predictions to %s", len(self.files), self.output_dir / self.csv_name)
        if not (labelled and self.metrics_name):
            return None
        report = classification_metrics(self.labels, preds, probs, names)
        report = {"split": self.split, **self.extra, **report,
                  "undefined_values": "null: recall of a class absent from the split, precision of a class neither "
                                      "present nor predicted, ROC AUC of a class without positives or negatives; "
                                      "macro values average the defined ones"}
        (self.output_dir / self.metrics_name).write_text(json.dumps(json_clean(report), indent=2))
        if self.confusion_name:
            s = report["summary"]
            title = f"{self.split or ''} acc {s['accuracy']:.3f}, macro recall {s['macro_recall']:.3f}".strip()
            plot_confusion_matrix(np.asarray(report["confusion_matrix"]), names, self.output_dir / self.confusion_name,
                                  title)
        if engine is not None:
            engine.state.metrics.update({f"report_{k}": v for k, v in report["summary"].items()})
        s = report["summary"]
        logger.info("evaluated %d images (%s): accuracy %.4f, macro recall %.4f, macro precision %.4f, AUC %.4f -> %s",
                    s["num_images"], self.split, s["accuracy"], s["macro_recall"], s["macro_precision"],
                    s["roc_auc_macro_ovr"], self.output_dir / self.metrics_name)
        return report
