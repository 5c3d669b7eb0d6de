"""Online k-NN monitor: is pre-training learning anything? (frozen pooled features, weighted k-NN vote)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.data import DataLoader

from ..data.preprocess import make_cached_dataset, read_image, unlabelled_preprocess
from ..networks.utils import eval_mode, unwrap
from .step import autocast_for

__all__ = ["KNNMonitor", "build_knn_monitor", "extract_features", "knn_predict", "lesion_size_labels", "monitor_split"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(
    network: torch.nn.Module, loader: Iterable, device: torch.device | str, image_key: str = "image",
    label_key: str | None = "label", amp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled features ``(N, D)`` (float32, L2-normalised) and labels ``(N,)`` of every batch in ``loader``.

    ``network`` is a pre-training method (``forward`` gives the pooled feature) or a bare encoder."""

    model = unwrap(network)
    feats, labels = [], []
    with eval_mode(model):
        for batch in loader:
            x = torch.as_tensor(batch[image_key]).to(device)
            with autocast_for(device, amp):
                out = model(x)
            out = out[1] if isinstance(out, tuple) else out  # an encoder returns (feature maps, pooled)
            feats.append(F.normalize(out.float(), dim=1).cpu())
            if label_key is not None:
                labels.append(torch.as_tensor(batch[label_key]).view(-1).long())
    return torch.cat(feats), (torch.cat(labels) if labels else None)


def knn_predict(
    query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int, k: int = 20,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Weighted k-NN (Wu et al., 2018): each of the ``k`` most cosine-similar bank items votes for its class with
    weight ``exp(sim / temperature)``. Shapes: ``query (Q, D)``, ``bank (N, D)`` normalised -> ``(Q,)`` classes."""
    k = min(k, bank.shape[0])
    sim = query @ bank.T
    top_sim, top_idx = sim.topk(k, dim=1)
    votes = torch.zeros(query.shape[0], num_classes)
    votes.scatter_add_(1, bank_labels[top_idx], (top_sim / temperature).exp())
    return votes.argmax(dim=1)


def lesion_size_labels(mask_paths: Sequence[str], num_bins: int = 3) -> tuple[list[int], list[float]]:
    """Monitor labels for segmentation data: the quantile bin of each mask's foreground fraction.

    Lesion size is visible in the image, varies widely in ISIC and Kvasir-SEG, and is what a segmentation encoder
    must sense; bins at the quantiles give balanced classes. Returns the labels and the bin edges.
    """

    fractions = np.array([float((read_image(p).max(axis=0) >= 0.5).mean()) for p in mask_paths])  # as BinarizeMaskd
    edges = np.quantile(fractions, np.linspace(0, 1, num_bins + 1)[1:-1]).tolist()
    return np.digitize(fractions, edges).astype(int).tolist(), edges


class KNNMonitor:
    """Every ``interval`` epochs, k-NN accuracy of frozen pooled features: ``query`` items voted by ``bank`` items.

    Writes ``engine.state.metrics["knn_accuracy"]`` (and the majority-class baseline ``knn_chance``), logs them and,
    with a ``summary_writer``, adds them to TensorBoard. With ``at_start``, a fresh run (iteration 0) first measures
    the initial weights: ``knn_init_accuracy``, the reference that tells whether pre-training improves on random
    features (on chest X-rays a random ResNet's features already reach a k-NN accuracy far above the majority class).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        bank_loader: Iterable,
        query_loader: Iterable,
        num_classes: int,
        k: int = 20,
        temperature: float = 0.07,
        interval: int = 1,
        at_start: bool = False,
        summary_writer=None,
        image_key: str = "image",
        label_key: str = "label",
        device: str | torch.device | None = None,
        amp: bool = False,
    ) -> None:
        self.network, self.bank_loader, self.query_loader = network, bank_loader, query_loader
        self.num_classes, self.k, self.temperature = num_classes, k, temperature
        self.interval, self.at_start = interval, at_start
        self.writer = summary_writer
        self.image_key, self.label_key, self.device, self.amp = image_key, label_key, device, amp
        self.history: list[tuple[int, float]] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)
        if self.at_start:
            engine.add_event_handler(Events.STARTED, self._initial)

    def _initial(self, engine: Engine) -> None:
        if engine.state.iteration == 0:  # a resumed run's weights are no longer the initial ones
            acc = self.__call__(engine)
            engine.state.metrics["knn_init_accuracy"] = acc

    def __call__(self, engine: Engine) -> float:
        device = self.device or engine.state.device
        args = dict(device=device, image_key=self.image_key, label_key=self.label_key, amp=self.amp)
        bank, bank_labels = extract_features(self.network, self.bank_loader, **args)
        query, query_labels = extract_features(self.network, self.query_loader, **args)
        pred = knn_predict(query, bank, bank_labels, self.num_classes, self.k, self.temperature)
        acc = float((pred == query_labels).float().mean())
        chance = float(torch.bincount(query_labels, minlength=self.num_classes).max() / len(query_labels))
        engine.state.metrics["knn_accuracy"] = acc
        engine.state.metrics["knn_chance"] = chance
        engine.state.metrics["knn_epoch"] = engine.state.epoch
        self.history.append((engine.state.epoch, acc))
        init = engine.state.metrics.get("knn_init_accuracy")
        logger.info(f"epoch {engine.state.epoch}: k-NN accuracy {acc:.4f} (majority class {chance:.4f}"
                    + (f", initial weights {init:.4f})" if init is not None else ")"))
        if self.writer is not None:
            self.writer.add_scalar("knn_accuracy", acc, engine.state.epoch)
            self.writer.add_scalar("knn_chance", chance, engine.state.epoch)
        return acc


def monitor_split(
    datalist: dict, max_bank: int = 500, max_query: int = 200, seed: int = 0, num_bins: int = 3
) -> tuple[list[dict], list[dict], int]:
    """Labelled bank and query items for the monitor, from a datalist's ``training`` and ``validation`` splits.

    Classification items keep their class label; segmentation items (``label`` is a mask path) get the lesion-size
    bin of :func:`lesion_size_labels`. Without a validation split, the query items are taken from training.
    Returns ``(bank, query, num_classes)``; both subsets are drawn by ``seed``.
    """
    rng = np.random.default_rng(seed)
    train = list(datalist.get("training", []))
    query = list(datalist.get("validation", []) or [])
    if not train or "label" not in train[0]:
        raise ValueError("the k-NN monitor needs labelled training items (class labels or masks)")
    train = [train[i] for i in rng.permutation(len(train))]
    if not query:
        cut = max(1, min(max_query, len(train) // 4))
        query, train = train[:cut], train[cut:]
    bank, query = train[:max_bank], [query[i] for i in rng.permutation(len(query))][:max_query]
    if isinstance(bank[0]["label"], (int, np.integer)):
        num_classes = 1 + max(int(it["label"]) for it in bank + query)
        strip = lambda items: [{"image": it["image"], "label": int(it["label"])} for it in items]  # noqa: E731
        return strip(bank), strip(query), num_classes
    labels, _ = lesion_size_labels([it["label"] for it in bank + query], num_bins)
    items = [{"image": it["image"], "label": lab} for it, lab in zip(bank + query, labels)]
    return items[: len(bank)], items[len(bank) :], num_bins


def build_knn_monitor(
    network: torch.nn.Module,
    datalist: dict,
    image_size: int,
    channels: int,
    max_bank: int = 500,
    max_query: int = 200,
    batch_size: int = 32,
    k: int = 20,
    interval: int = 1,
    seed: int = 0,
    num_workers: int = 0,
    at_start: bool = False,
    summary_writer=None,
    amp: bool = False,
) -> KNNMonitor | None:
    """A :class:`KNNMonitor` over :func:`monitor_split` of ``datalist``, images decoded once and cached; None, with a
    note in the log, when the training items have no labels (a plain folder of images): the pre-training then runs
    without the monitor."""
    train = datalist.get("training") or []
    if not train or "label" not in train[0]:
        logger.warning("the training images have no labels (class labels or masks), so the k-NN monitor of the "
                       "representation is off; pre-training runs without it")
        return None
    bank, query, num_classes = monitor_split(datalist, max_bank, max_query, seed)
    loaders = [
        DataLoader(
            make_cached_dataset(items, unlabelled_preprocess(image_size, channels), num_workers=num_workers or None),
            batch_size=batch_size, shuffle=False, num_workers=0,
        )
        for items in (bank, query)
    ]
    return KNNMonitor(network, loaders[0], loaders[1], num_classes, k=k, interval=interval, at_start=at_start,
                      summary_writer=summary_writer, amp=amp)
