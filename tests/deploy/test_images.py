"""The Dockerfile builds one image per service the way deploy/k8s runs it: its own locked
requirements only, non-root, exec-form `echodesk <service>`, SIGTERM, a health check on the port
its settings name. No Docker engine is needed: the file is read, and the health check runs here.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.settings import SERVICE_SETTINGS
from tests.support.deploy import SERVICES, default_ports
from tests.support.tools import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
HEALTHCHECK = REPO_ROOT / "deploy" / "docker" / "healthcheck.py"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continuation"
    result = []
    for line in joined:
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name -> (what it is FROM, its instructions)."""
    found: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions():
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            current = []
            found[name.strip()] = (base.strip(), current)
        else:
            current.append((word, rest))
    return found


def only(stage: list[tuple[str, str]], word: str) -> str:
    values = [rest for w, rest in stage if w == word]
    assert len(values) == 1, f"expected one {word}, found {values}"
    return values[0]


def test_runtime_is_slim_python_311_non_root_and_stops_on_sigterm() -> None:
    all_stages = stages()
    base, _ = all_stages["python-base"]
    assert base.startswith("python:3.11-slim")
    runtime_base, runtime = all_stages["runtime"]
    assert runtime_base == "python-base"
    user = only(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert int(uid) >= 10000  # numeric, so runAsNonRoot can verify it; the same as deploy/k8s
    assert int(gid) >= 10000
    assert only(runtime, "STOPSIGNAL") == "SIGTERM"
    assert "/opt/echodesk/bin" in only(runtime, "ENV")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_image(service: str) -> None:
    all_stages = stages()
    assert set(SERVICES) <= set(all_stages)
    base, stage = all_stages[service]
    assert base == "runtime"
    assert only(stage, "COPY") == f"--from={service}-venv /opt/echodesk /opt/echodesk"
    # Exec form: `echodesk` is PID 1 and receives SIGTERM itself.
    assert json.loads(only(stage, "ENTRYPOINT")) == ["echodesk", service]
    options, _, command = only(stage, "HEALTHCHECK").partition("CMD ")
    assert "--interval=" in options
    assert json.loads(command) == ["python", "/usr/local/lib/echodesk/healthcheck.py", service]
    ports = (entry.partition("/") for entry in only(stage, "EXPOSE").split())
    exposed = {(int(port), protocol.upper()) for port, _, protocol in ports}
    assert exposed == default_ports(service)
    # A stage that needs root to install something switches back: the image runs as the runtime's user.
    users = [rest for word, rest in stage if word == "USER"]
    assert not users or users[-1] == only(all_stages["runtime"][1], "USER")


def test_the_media_image_can_speak_the_demo_line() -> None:
    _, stage = stages()["media"]
    assert any(word == "RUN" and "espeak-ng" in rest for word, rest in stage)


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_installs_only_its_own_locked_requirements(service: str) -> None:
    base, venv = stages()[f"{service}-venv"]
    assert base == "builder"
    copies = [rest for word, rest in venv if word == "COPY" and not rest.startswith("--from")]
    assert copies == [f"requirements/{service}.txt requirements.txt"]
    runs = [rest for word, rest in venv if word == "RUN"]
    assert runs == [
        "/opt/echodesk/bin/pip install --compile -r requirements.txt",
        "/opt/echodesk/bin/pip install --compile --no-deps /wheels/*.whl",
    ]
    _, project = stages()["project"]
    assert only(project, "RUN") == "/opt/echodesk/bin/pip wheel --no-deps --wheel-dir /wheels ."


def test_build_context_holds_only_what_the_images_copy() -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "everything is excluded first, then what the images need"
    included = [p[1:].rstrip("/") for p in patterns if p.startswith("!")]
    sources = [
        source.rstrip("/")
        for word, rest in instructions()
        if word == "COPY" and not rest.startswith("--from")
        for source in rest.split()[:-1]
    ]
    for source in sources:
        assert any(fnmatch.fnmatch(source, p) or source.startswith(p + "/") for p in included), source
    for private in (".venv", "data", ".git", "node_modules", "tests"):
        assert not any(fnmatch.fnmatch(private, p) for p in included), private


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def health_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_healthcheck(service: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ECHODESK_")}
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), service],
        env={**clean, "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(("service", "setting"), [("recorder", "health_port"), ("api", "http_port")])
def test_healthcheck_asks_the_port_the_settings_name(service: str, setting: str, health_server: int) -> None:
    port_env = SERVICE_SETTINGS[service].env_name(setting)
    assert run_healthcheck(service, {port_env: str(health_server)}).returncode == 0
    with socket_closed() as closed:
        failed = run_healthcheck(service, {port_env: str(closed)})
    assert failed.returncode == 1
    assert f"127.0.0.1:{closed}/healthz" in failed.stderr


@contextlib.contextmanager
def socket_closed() -> Iterator[int]:
    """A loopback port that is bound but never listens, so connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.slow
def test_the_wheel_the_images_install_carries_every_file_of_the_project(tmp_path: Path) -> None:
    # The images install the project as a wheel (`project` stage), not from the tree: a file of
    # shared/ or services/ the wheel leaves out (migrations, templates, static files) would be
    # missing in production while every test here passes.
    listed = subprocess.run(
        ["git", "ls-files", "--", "pyproject.toml", "README.md", "shared", "services"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    source = tmp_path / "src"
    for name in listed:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = tmp_path.glob("*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in listed if name.startswith(("shared/", "services/")) and name not in packaged]
    assert missing == [], "declare them as package data in pyproject.toml"
