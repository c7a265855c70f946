"""checkov over every rendered overlay and the Dockerfile: no failed check. What is skipped is
skipped in deploy/k8s/.checkov.yaml with its reason beside it, or, for one resource, by an
annotation on that resource (hostNetwork on media).

checkov lives in a venv of its own (`make checkov-install`, .venv/checkov): its pins conflict with
the services' locks. It runs offline (--skip-download; any proxy-honouring request would fail).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import REPO_ROOT, require_tool

CONFIG = REPO_ROOT / "deploy" / "k8s" / ".checkov.yaml"
OVERLAYS = ("development", "production")
#: Checks skipped for one resource by annotation: (check, resource kind and name).
ANNOTATED_SKIPS = {("CKV_K8S_19", "Deployment", "media")}

pytestmark = pytest.mark.slow


def checkov_binary() -> str:
    own = REPO_ROOT / ".venv" / "checkov" / "bin" / "checkov"
    return str(own) if own.exists() else require_tool("checkov")


def checkov(*args: str) -> dict[str, Any]:
    offline = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    offline |= {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    done = subprocess.run(
        [checkov_binary(), "--config-file", str(CONFIG), "--skip-download", "--output", "json", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=offline,
        check=False,
    )
    assert done.returncode == 0, f"checkov found problems:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    assert isinstance(report, dict), report
    return report


def test_every_skip_in_the_config_has_its_reason() -> None:
    lines = CONFIG.read_text().splitlines()
    skipped = [i for i, line in enumerate(lines) if re.match(r"^\s*-\s*CKV", line)]
    assert skipped, "no skips: then drop this test's expectation too"
    for index in skipped:
        assert lines[index - 1].strip().startswith("#"), f"no reason above {lines[index].strip()}"


def test_manifests_pass(tmp_path: Path) -> None:
    kubectl = require_tool("kubectl")
    for overlay in OVERLAYS:
        rendered = subprocess.run(
            [kubectl, "kustomize", str(REPO_ROOT / "deploy" / "k8s" / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        (tmp_path / f"{overlay}.yaml").write_text(rendered.stdout)
    report = checkov("--framework", "kubernetes", "--directory", str(tmp_path))
    summary = report["summary"]
    assert summary["failed"] == 0
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 500, summary  # it really looked at the workloads
    # A resource reads "Deployment.<namespace>.media".
    skipped = {
        (check["check_id"], *check["resource"].split(".")[::2])
        for check in report["results"]["skipped_checks"]
    }
    assert skipped <= ANNOTATED_SKIPS


def test_dockerfile_passes() -> None:
    report = checkov("--framework", "dockerfile", "--file", str(REPO_ROOT / "Dockerfile"))
    assert report["summary"]["failed"] == 0
    assert report["summary"]["passed"] > 50
