"""Reliability, round 3 (issue 29): a changed corpus on resume, outputs that appear only when
complete, repeated signals, a read-only working directory, non-UTF-8 file names, a
one-character vocabulary, hostile run folders, temporary files, a missing backend, and small
things (closed stdin, odd files for classify, full disks on export, TOML infinities).

Each test names the defect it guards; each failed on the code before the fix."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from textgen import runs

from .conftest import TINY_FLAGS, TINY_TEXT, invoke

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- 15. the checkout


def test_the_checkout_guard_sees_what_a_test_would_change(tmp_path):
    """Issue 29.15: conftest's session check compares this snapshot of the checkout before and
    after the suite; here it is shown to see the writes the issue found, and to ignore Python's
    bytecode caches."""
    from .conftest import checkout_snapshot

    repo = tmp_path / "checkout"
    (repo / "checkpoints" / "mine").mkdir(parents=True)
    (repo / ".gitignore").write_text("checkpoints/\n__pycache__/\n")
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    os.symlink("mine", repo / "checkpoints" / "latest")
    before = checkout_snapshot(repo)
    assert before == checkout_snapshot(repo)
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"bytecode")
    assert checkout_snapshot(repo) == before
    (repo / "checkpoints" / "latest").unlink()
    os.symlink("/tmp/pytest-of-root/run", repo / "checkpoints" / "latest")  # repointed
    assert checkout_snapshot(repo) != before
    before = checkout_snapshot(repo)
    (repo / "checkpoints" / "tiny-20260101-000000").mkdir()  # a new run folder
    assert checkout_snapshot(repo) != before
    before = checkout_snapshot(repo)
    (repo / "loss.png").write_bytes(b"png")  # a new file anywhere in the checkout
    assert checkout_snapshot(repo) != before
