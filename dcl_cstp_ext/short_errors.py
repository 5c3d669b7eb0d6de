"""A user's mistake ends a run with its message as the last thing printed, not buried under a traceback.

:func:`install` sets ``sys.excepthook`` so that an uncaught exception whose chain holds a user's mistake
(:func:`user_error_types`: a bad data file, a refused download or setting, a stale stage, a NaN) prints
``error: <its message>`` and where the full traceback was written; anything else prints as Python would. Bundle
runs install it in their first ``initialize`` entry (:func:`dcl_cstp_ext.settings.check_command_line`), the
``dcl-cstp`` command in ``main``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

__all__ = ["install", "user_error", "user_error_types"]


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions that mean a user's mistake, each with a message that says what to change."""
    from .data.errors import DataError
    from .download import DownloadError
    from .pipeline.runner import StaleStage
    from .settings import SettingsError

    return DataError, DownloadError, SettingsError, StaleStage, FloatingPointError


def user_error(exc: BaseException | None) -> BaseException | None:
    """The first exception of :func:`user_error_types` in ``exc``'s chain (``__cause__``, then ``__context__``)."""
    types, seen = user_error_types(), set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, types):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _hook(kind, value, tb) -> None:
    found = user_error(value)
    if found is None:
        sys.__excepthook__(kind, value, tb)
        return
    path = Path(tempfile.gettempdir()) / f"dcl-cstp-error-{os.getpid()}.txt"
    try:
        path.write_text("".join(traceback.format_exception(kind, value, tb)))
        where = f"(the full traceback: {path})"
    except OSError:
        where = ""
    sys.stderr.write(f"\nerror: {found}\n{where}\n")


def install() -> None:
    """Route uncaught exceptions through the short form above (idempotent)."""
    sys.excepthook = _hook
