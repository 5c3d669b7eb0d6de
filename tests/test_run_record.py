"""dcl_cstp_ext.utils.code_version: every result records the commit of the code that made it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import dcl_cstp_ext
from dcl_cstp_ext.utils import code_version, record_run

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command")


def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository with a tracked package ``pkg/`` and an ignored ``venv/`` holding an installed copy of it."""
    _git(tmp_path, "init", "-q")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("venv/\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "first")
    shutil.copytree(tmp_path / "pkg", tmp_path / "venv" / "site-packages" / "pkg")
    code_version.cache_clear()
    yield tmp_path
    code_version.cache_clear()


def test_the_commit_of_a_checkout_and_whether_its_files_were_changed(repo):
    head = _git(repo, "rev-parse", "HEAD")
    assert code_version(str(repo / "pkg")) == {"commit": head, "dirty": False}
    (repo / "pkg" / "__init__.py").write_text("x = 2\n")
    code_version.cache_clear()
    assert code_version(str(repo / "pkg")) == {"commit": head, "dirty": True}


def test_an_installed_copy_inside_a_repository_does_not_borrow_its_commit(repo, tmp_path_factory):
    assert code_version(str(repo / "venv" / "site-packages" / "pkg")) is None
    outside = tmp_path_factory.mktemp("nogit")
    assert code_version(str(outside)) is None


def test_every_run_record_carries_the_code_version(tmp_path):
    """In this checkout (a clone, as CI runs it) the record names its HEAD; elsewhere (an installed wheel) None."""
    record_run(str(tmp_path), name="run_info.json")
    entry = json.loads((tmp_path / "run_info.json").read_text())[-1]
    package = Path(dcl_cstp_ext.__file__).resolve().parent
    tracked = subprocess.run(["git", "-C", str(package), "ls-files", "--error-unmatch", "__init__.py"],
                             capture_output=True).returncode == 0
    assert entry["code"] == ({"commit": _git(package, "rev-parse", "HEAD"), "dirty": entry["code"]["dirty"]}
                             if tracked else None)
