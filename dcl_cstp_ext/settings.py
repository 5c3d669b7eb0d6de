"""Check the settings a user gives a bundle before anything is read or trained: unknown keys (with a did-you-mean),
wrong types and out-of-range values, each named with the key.

A bundle run (``python -m monai.bundle run ... --max_epochs 3``) is checked by the first ``initialize`` entry of
every config, ``"$dcl_cstp_ext.settings.check_command_line(@allow_new_keys)"``, which reads the command line that
MONAI's ``run`` parsed; the pipeline checks its ``--overrides`` the same way (:func:`check_overrides`). MONAI lets
an override add a new key; here that needs ``--allow_new_keys True`` (a new argument of a ``_target_`` component,
``--train#trainer#epoch_length 5``, is always allowed).
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["SettingsError", "check_command_line", "check_overrides", "command_line_overrides", "RULES"]

#: ``monai.bundle run``'s own arguments (not config keys)
RUN_ARGUMENTS = {"config_file", "meta_file", "logging_file", "args_file", "tracking", "run_id", "init_id", "final_id",
                 "workflow_type", "workflow_name", "bundle_root"}
#: the keys ``--tracking mlflow`` adds
TRACKING_KEYS = {"output_dir", "tracking_uri", "experiment_name", "run_name", "save_execute_config"}
#: names people reach for, and the key each bundle uses instead
ALIASES = {"learning_rate": "lr", "epochs": "max_epochs", "num_epochs": "max_epochs", "n_epochs": "max_epochs",
           "batchsize": "batch_size", "bs": "batch_size", "workers": "num_workers", "threads": "num_threads",
           "img_size": "image_size", "size": "image_size"}


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: ranges checked wherever the key is set: ``key -> (test, what it must be)``
RULES = {
    "max_epochs": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "val_batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "num_workers": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "num_threads": (lambda v: v is None or (_integer(v) and v >= 0), "an integer >= 0 (0: torch's default)"),
    "lr": (lambda v: _number(v) and v > 0, "a number > 0"),
    "weight_decay": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "warmup_epochs": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
    "image_size": (lambda v: _integer(v) and v >= 16, "an integer >= 16 (pixels)"),
    "label_fraction": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "seed": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
}
#: the U-Net's encoder halves the image five times: its input side must be a multiple of this
UNET_MULTIPLE = 32


class SettingsError(ValueError):
    """One or more settings refused; the message names each key and the problem, one per line."""


def _lookup(config, path: Sequence[str]):
    """The value at ``path`` (``"a#b#0"`` split) in the raw ``config``; raises KeyError when it is not there."""
    node = config
    for part in path:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(part)
    return node


def _suggestion(key: str, config: Mapping) -> str:
    """``" (did you mean --x?)"`` from the keys beside ``key``'s place, and :data:`ALIASES`; empty if none is near."""
    *parent, leaf = key.split("#")
    try:
        siblings = _lookup(config, parent)
    except KeyError:
        return ""
    names = [str(k) for k in siblings] if isinstance(siblings, Mapping) else []
    aliases = {a: t for a, t in ALIASES.items() if not parent and t in names}
    close = difflib.get_close_matches(leaf, names + list(aliases), n=1, cutoff=0.6)
    if not close:
        return ""
    return f" (did you mean --{'#'.join([*parent, aliases.get(close[0], close[0])])}?)"


def _type_problem(key: str, value, default) -> str | None:
    if isinstance(value, str) and value[:1] in "@$%":  # a reference or an expression: its type shows when run
        return None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            hint = " (write True or False: the text 'false' would count as true)" if isinstance(value, str) else ""
            return f"--{key}: expected True or False, got {value!r}{hint}"
    elif _integer(default):
        if not _integer(value):
            return f"--{key}: expected an integer, got {value!r}"
    elif _number(default):
        if not _number(value):
            return f"--{key}: expected a number, got {value!r}"
    return None


def check_overrides(config: Mapping, overrides: Mapping, allow_new_keys: bool = False, tracking: bool = False) -> None:
    """Refuse ``overrides`` (``{"key" or "a#b": value}``) of the raw merged bundle ``config`` (its files, before the
    overrides) with one :class:`SettingsError` listing every problem: a key the config does not have (with a
    did-you-mean; allowed with ``allow_new_keys``, and as a new argument of a ``_target_`` component), a value of
    another type than the key's default, a value out of the range of :data:`RULES` (None passes where the default
    is None), and a U-Net ``image_size`` that is not a multiple of :data:`UNET_MULTIPLE`. References and
    expressions (``@x``, ``$...``, ``%...``) are left to the run."""
    problems = []
    for key, value in overrides.items():
        if key in RUN_ARGUMENTS or (tracking and key in TRACKING_KEYS):
            continue
        path = key.split("#")
        try:
            default = _lookup(config, path)
        except KeyError:
            try:
                parent = _lookup(config, path[:-1]) if len(path) > 1 else None
            except KeyError:
                parent = None
            if not allow_new_keys and not (isinstance(parent, Mapping) and "_target_" in parent):
                problems.append(f"--{key}: unknown setting{_suggestion(key, config)}; to add a new key on purpose, "
                                "also set allow_new_keys to True")
            continue
        problem = _type_problem(key, value, default)
        if problem:
            problems.append(problem)
    for key, value in overrides.items():
        test, what = RULES.get(key, (None, ""))
        if test is None or (isinstance(value, str) and value[:1] in "@$%"):
            continue
        if any(p.startswith(f"--{key}:") for p in problems):  # its type is wrong already
            continue
        if value is None and config.get(key, 0) is None:  # None where the bundle's default is None: "work it out"
            continue
        if not test(value):
            problems.append(f"--{key}: must be {what}, got {value!r}")
        elif key == "image_size" and _uses_unet(config) and value % UNET_MULTIPLE:
            problems.append(f"--{key}: the U-Net needs a multiple of {UNET_MULTIPLE}, got {value} (try "
                            f"{max(UNET_MULTIPLE, round(value / UNET_MULTIPLE) * UNET_MULTIPLE)})")
    if problems:
        raise SettingsError("invalid settings, nothing was run:\n  " + "\n  ".join(problems))


def _uses_unet(config: Mapping) -> bool:
    network = config.get("network_def")
    return isinstance(network, Mapping) and str(network.get("_target_", "")).endswith("FlexibleUNet")


def command_line_overrides(argv: Sequence[str]) -> tuple[list[str], dict, bool] | None:
    """``(config files, overrides, tracking)`` of a ``python -m monai.bundle run ...`` command line (``argv`` as
    ``sys.argv``), with values parsed as MONAI's ``fire`` parses them (and an ``--args_file``'s defaults under the
    command line's); None when ``argv`` is not such a command."""
    if not argv or not str(argv[0]).replace("\\", "/").endswith("monai/bundle/__main__.py") or "run" not in argv[1:2]:
        return None
    from fire.parser import DefaultParseValue

    pairs, rest = {}, list(argv[2:])
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("--"):
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            value = rest.pop(0) if rest and not rest[0].startswith("--") else "True"
        key = key.replace("-", "_") if key in {"config-file", "meta-file", "args-file"} else key
        pairs[key] = DefaultParseValue(value)
    if "args_file" in pairs:
        pairs = {**_read_args_file(pairs["args_file"]), **pairs}
    files = pairs.get("config_file") or []
    files = [files] if isinstance(files, str) else list(files)
    return [str(f) for f in files], pairs, bool(pairs.get("tracking"))


def _read_args_file(path) -> dict:
    text = Path(str(path)).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        return dict(yaml.safe_load(text) or {})
    return dict(json.loads(text))


def check_command_line(allow_new_keys: bool = False, argv: Sequence[str] | None = None) -> None:
    """The check of a bundle run: :func:`check_overrides` of the ``monai.bundle run`` command line (``argv``,
    default ``sys.argv``) against its config files; does nothing in any other program (the pipeline, tests), which
    check their overrides themselves. Also makes a user's mistake the last thing the run prints
    (:func:`dcl_cstp_ext.short_errors.install`)."""
    parsed = command_line_overrides(sys.argv if argv is None else argv)
    if parsed is None:
        return
    from .short_errors import install

    install()
    files, overrides, tracking = parsed
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(files)
    check_overrides(parser.get(), overrides, allow_new_keys=bool(allow_new_keys), tracking=tracking)
