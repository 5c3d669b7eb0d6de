"""Every module of dcl_cstp_ext imports on its own, as a fresh process would import it first (a command such as
``dcl-cstp report`` imports ``reports.pipeline_report`` before anything else). A circular import hides when some
other module happens to be imported first, as it is in most tests."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import importlib, pkgutil, sys, traceback
import dcl_cstp_ext
names = sorted(m.name for m in pkgutil.walk_packages(dcl_cstp_ext.__path__, "dcl_cstp_ext."))
failed = []
for name in names:
    for loaded in [k for k in sys.modules if k == "dcl_cstp_ext" or k.startswith("dcl_cstp_ext.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc().strip().splitlines()[-1])
print(len(names))
print("\n".join(failed))
"""


def test_every_module_imports_first_in_a_fresh_process():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    count, *failed = out.stdout.strip().splitlines()
    assert int(count) > 30  # the package was walked
    assert not [f for f in failed if f], "\n".join(failed)
