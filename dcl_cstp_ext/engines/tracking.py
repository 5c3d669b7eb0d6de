"""Experiment tracking the MONAI way: ``python -m monai.bundle run ... --tracking mlflow``.

MONAI's default MLflow settings (``monai.bundle.utils.DEFAULT_MLFLOW_SETTINGS``) append an ``MLFlowHandler`` to
``train#handlers`` (and to ``validate#handlers`` where there is a ``validate#evaluator``) whose iteration output
transform is ``monai.handlers.from_engine(['loss'], first=True)``. That transform expects the *decollated* output
of MONAI's trainers (a list of dicts). The trainers of these bundles keep the batch output as one dict
(``decollate: false``, and the pre-training / generative trainers return a dict of scalars), for which
``from_engine`` returns a 1-tuple that MLflow cannot log. The bundles pass their handler list through
:func:`mlflow_compatible` (``"train_handlers": "$dcl_cstp_ext.engines.trainer_handlers(@train#handlers_all_ranks, @train#handlers)"``;
``train#handlers`` holds the main process's handlers, which :func:`trainer_handlers` leaves out on the other DDP ranks), which
leaves every handler as it is except such MLflow handlers, whose transform then gives the loss as a number, plus
the other scalar entries of the output (``z_std``, ``l1``, ``d_loss``, ...) as ``train_<key>``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .handlers import is_main_process

__all__ = ["mlflow_compatible", "trainer_handlers"]


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.detach().item()) if value.numel() == 1 else None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def _batch_output_transform(transform: Callable, tag_name: str) -> Callable:
    def _transform(output: Any) -> Any:
        value = transform(output)
        if not (isinstance(value, tuple) and len(value) == 1 and isinstance(output, dict)):
            return value  # decollated output, or a transform that already gives what MLflow can log
        loss = _scalar(value[0])
        metrics = {} if loss is None else {tag_name: loss}
        for key, item in output.items():
            number = _scalar(item) if key != "loss" else None
            if number is not None:
                metrics[f"train_{key}"] = number
        return metrics or None

    _transform.__wrapped__ = transform  # type: ignore[attr-defined]
    return _transform


def mlflow_compatible(handlers: Sequence | None) -> list | None:
    """The trainer's handler list, with MONAI's ``MLFlowHandler`` (if ``--tracking mlflow`` added one) made to log
    the batch-dict output of these bundles' trainers. Other handlers, and runs without tracking, are unchanged."""
    if handlers is None:
        return None
    from monai.handlers import MLFlowHandler

    handlers = list(handlers)
    for handler in handlers:
        if isinstance(handler, MLFlowHandler) and not hasattr(handler.output_transform, "__wrapped__"):
            handler.output_transform = _batch_output_transform(handler.output_transform, handler.tag_name)
    return handlers


def trainer_handlers(all_ranks: Sequence, main_process: Sequence, validation: Any = None) -> list:
    """A trainer's handler list: ``all_ranks`` on every process, then ``validation`` (``validate#...``: one handler
    or a list, such as the pre-training's k-NN monitor) and ``main_process`` (``train#handlers``, where MONAI's
    ``--tracking`` appends its handler) only on DDP rank 0 or without DDP; through :func:`mlflow_compatible`. The
    validation comes before ``main_process`` so that an epoch summary there sees its result. A None entry (a handler
    that does not apply, such as the k-NN monitor without labels) is left out."""
    validation = list(validation) if isinstance(validation, (list, tuple)) else [validation]
    handlers = [*all_ranks, *([*validation, *main_process] if is_main_process() else [])]
    return mlflow_compatible([h for h in handlers if h is not None])
