"""sipp as a real SIP peer for pytest: run a scenario of ``tests/sipp/`` and read what happened.

A run is a child process (never ``-bg``, so a test can always stop it) on 127.0.0.1 only, on a
free port, with ``-nostdin`` and stdin at /dev/null (an immediate end of file; a really closed
fd 0 would be reused by sipp's first socket), and it always ends by itself: ``-timeout`` with
``-timeout_error`` bounds the whole run, ``-recv_timeout`` every awaited message, and Python kills
what outlives both. Its traces go into a directory of their own: the final statistics
(``-trace_stat``) give the successful and failed call counts, ``-trace_counts`` how many of each
scenario message were sent and received, the error log (``-trace_err``) is quoted in every
assertion message.

Synchronous::

    with Sipp("carrier_registrar_uas", tmp_path, injection=[["alice", "s3cret"]], calls=2) as carrier:
        agent = Sipp(
            "register_digest_uac", tmp_path, remote=carrier.address, calls=1,
            injection=[register_row("alice", "s3cret", "carrier.test")], auth_uri="carrier.test",
        ).run()
        agent.assert_success(calls=1)
        carrier.wait().assert_success(calls=2)

and the same with ``start_async``/``wait_async``/``stop_async``/``run_async`` and ``async with``
inside a test's event loop.

A run without ``remote`` is a server: ``start`` returns once sipp listens on ``port``, and it
runs with ``-deadcall_wait 0`` so that a request reusing a finished call's Call-ID (REGISTER
refreshes, OPTIONS keep-alives) starts a new scenario call instead of being dropped as a
straggler of the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

import pytest

from tests.support.tools import IN_CI, REPO_ROOT, require_tool

SCENARIO_DIR: Final = REPO_ROOT / "tests" / "sipp"
LOCAL_IP: Final = "127.0.0.1"

#: sipp's one-socket transports: UDP, TCP, TLS (the last only in builds with OpenSSL).
Transport = Literal["u1", "t1", "l1"]
InjectionOrder = Literal["SEQUENTIAL", "RANDOM", "USER"]
MessageCount = Literal["Sent", "Recv", "Retrans", "Timeout", "Unexp"]

#: How long a started sipp may take to bind its port; it takes milliseconds when all is well.
_READY_TIMEOUT: Final = 5.0
#: Beyond sipp's own -timeout, how long Python waits before killing it: sipp needs a moment to
#: abort its calls and write its statistics once its timeout fires.
_EXIT_GRACE: Final = 5.0
_POLL_INTERVAL: Final = 0.02
#: Attempts at a free port: another process may take the one we picked before sipp binds it.
_BIND_ATTEMPTS: Final = 3
_ERROR_TEXT_LIMIT: Final = 6000
_STDERR_CHATTER: Final = ("Resolving remote host", "There were more errors, see")


class SippUnsupported(RuntimeError):
    """The installed sipp lacks a feature a run asks for (TLS, most often)."""


class SippStartError(RuntimeError):
    """sipp exited or never bound its port when it was started."""


@dataclass(frozen=True)
class SippBuild:
    """What ``sipp -v`` says about the installed binary."""

    path: str
    version: tuple[int, ...]
    #: Compile-time options from the version string, e.g. ``{"TLS", "SCTP", "PCAP", "RTPSTREAM"}``.
    options: frozenset[str]
    #: Whether its scenario parser knows the <verifyauth> action (a UAS checking digest
    #: credentials). No OpenSSL is needed for it with MD5: sipp 3.6 has its own md5.c.
    verifyauth: bool

    @property
    def tls(self) -> bool:
        return "TLS" in self.options


_VERSION_RE: Final = re.compile(r"SIPp v(?P<version>\d+(?:\.\d+)*)(?P<options>(?:-[A-Za-z0-9]+)*)")


@functools.cache
def sipp_build(path: str) -> SippBuild:
    """Version and compile-time options of the sipp at ``path`` (``sipp -v`` exits with 99)."""
    completed = subprocess.run(
        [path, "-v"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10, check=False
    )
    match = _VERSION_RE.search(completed.stdout + completed.stderr)
    if match is None:
        raise SippUnsupported(f"cannot read the version of {path}: {completed.stdout!r}")
    version = tuple(int(part) for part in match["version"].split("."))
    options = frozenset(option for option in match["options"].split("-") if option)
    # The action names are strings of the binary's scenario parser; no option lists them, and a
    # scenario run to find out would need ports. The self-tests prove the action really works.
    verifyauth = b"verifyauth" in Path(path).read_bytes()
    return SippBuild(path=path, version=version, options=options, verifyauth=verifyauth)


def require_sipp(*, tls: bool = False) -> SippBuild:
    """The installed sipp, or skip (outside CI) / fail (in CI) when it or TLS is missing."""
    build = sipp_build(require_tool("sipp"))
    missing = []
    if not build.verifyauth:
        missing.append("the <verifyauth> action (sipp 3.5 or later)")
    if tls and not build.tls:
        missing.append("TLS (a sipp built with OpenSSL; Debian's sip-tester is not)")
    if missing:
        message = f"sipp {'.'.join(map(str, build.version))} at {build.path} lacks {', '.join(missing)}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return build


def authentication_field(user: str, password: str) -> str:
    """sipp's ``[authentication ...]`` keyword for an injection field.

    sipp 3.6 cannot nest ``[field]`` keywords inside ``[authentication]``, but it parses that
    keyword when an injected field holds it, which is how scenarios get per-call credentials.
    sipp ends each value at a space or ``]``, and ``;`` separates injection fields.
    """
    for name, value in (("user", user), ("password", password)):
        if not value or re.search(r"[\s\[\];]", value):
            raise ValueError(f"sipp cannot carry a {name} of {value!r}: no spaces, brackets or ';'")
    return f"[authentication username={user} password={password}]"


def register_row(user: str, password: str, domain: str, expires: int = 3600) -> list[str]:
    """An injection line of register_digest_uac.xml and register_bench_uac.xml."""
    return [user, authentication_field(user, password), domain, str(expires)]


def free_port() -> int:
    """A port of 127.0.0.1 free for both UDP and TCP, sipp binding the one of its transport."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((LOCAL_IP, 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((LOCAL_IP, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port of 127.0.0.1 is free for both UDP and TCP")


def scenario_path(scenario: str | Path) -> Path:
    """A scenario of ``tests/sipp`` by name (``"options_uac"``, ``"options_uac.xml"``), or a path."""
    path = Path(scenario)
    if not path.is_absolute() and path.parent == Path("."):
        path = SCENARIO_DIR / (path.name if path.suffix == ".xml" else f"{path.name}.xml")
    if not path.is_file():
        raise FileNotFoundError(f"no sipp scenario {path}")
    return path


def _parse_stat_file(path: Path) -> dict[str, str]:
    """The last row of a ``-trace_stat`` file (cumulative "(C)" columns hold the run's totals)."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    names = lines[0].split(";")
    values = lines[-1].split(";")
    return {name: value for name, value in zip(names, values, strict=False) if name}


def _parse_counts_file(path: Path | None) -> dict[str, int]:
    """The last row of a ``-trace_counts`` file: ``"<index>_<message>_<Sent|Recv|...>"`` -> count."""
    if path is None:
        return {}
    stats = _parse_stat_file(path)
    counts: dict[str, int] = {}
    for name, value in stats.items():
        if re.fullmatch(r"\d+_.+_[A-Za-z]+", name) and value.strip().isdigit():
            counts[name] = int(value)
    return counts


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _int_stat(stats: Mapping[str, str], name: str) -> int:
    try:
        return int(float(stats.get(name, "0") or "0"))
    except ValueError:
        return 0


def _tail(text: str, limit: int = _ERROR_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else f"[... {len(text) - limit} characters before]\n{text[-limit:]}"


@dataclass(frozen=True)
class SippFiles:
    """Where one run's traces are (all in its own directory)."""

    directory: Path
    stats: Path
    errors: Path
    messages: Path
    scenario_log: Path
    screen: Path
    stderr: Path
    injection: Path | None

    def counts(self, scenario_stem: str, pid: int) -> Path | None:
        # -trace_counts has no file-name option: sipp names it after the scenario and its pid,
        # in its working directory, which the runner sets to this directory.
        path = self.directory / f"{scenario_stem}_{pid}_counts.csv"
        return path if path.exists() else None


@dataclass(frozen=True)
class SippResult:
    """How a sipp run ended, read from its exit code and trace files."""

    scenario: str
    argv: tuple[str, ...]
    returncode: int
    successful: int
    failed: int
    created: int
    #: The final row of the statistics file, column name -> value.
    stats: Mapping[str, str]
    #: Message counts per scenario step, e.g. ``{"1_401_Recv": 1, "2_REGISTER_Sent": 1}``.
    counts: Mapping[str, int]
    #: Calls neither successful nor failed: still running when sipp was stopped (SIGTERM ends
    #: sipp with exit code 0 and counts them nowhere else).
    unfinished: int
    #: sipp's own -timeout ended the run.
    timed_out: bool
    #: Python had to kill sipp (it outlived its own timeout plus a grace period).
    killed: bool
    #: The run was ended by ``stop`` rather than by itself.
    stopped: bool
    elapsed: float
    files: SippFiles

    @property
    def ok(self) -> bool:
        return (
            self.returncode == 0
            and self.failed == 0
            and self.unfinished == 0
            and not self.timed_out
            and not self.killed
        )

    @property
    def error_log(self) -> str:
        # sipp 3.6 writes its events back to back; a line per timestamp reads better.
        text = _read_text(self.files.errors)
        return re.sub(r"(?<!^)(?<!\n)(\d{4}-\d{2}-\d{2}\t\d{2}:\d{2}:\d{2}\.\d+\t)", r"\n\1", text).strip()

    @property
    def stderr(self) -> str:
        return _read_text(self.files.stderr).strip()

    @property
    def scenario_log(self) -> str:
        """What the scenario's <log> actions wrote."""
        return _read_text(self.files.scenario_log)

    @property
    def failure_reasons(self) -> dict[str, int]:
        """The non-zero cumulative ``Failed...`` counters, e.g. ``{"FailedTestDoesntMatch": 1}``."""
        reasons: dict[str, int] = {}
        for name in self.stats:
            if name.startswith("Failed") and name.endswith("(C)") and name != "FailedCall(C)":
                value = _int_stat(self.stats, name)
                if value:
                    reasons[name.removesuffix("(C)")] = value
        return reasons

    def count(self, message: str, kind: MessageCount) -> int:
        """How many times a scenario message was sent/received/... over all of its steps.

        ``message`` is a method (``"REGISTER"``) or a status code (``"401"``).
        """
        suffix = f"_{message}_{kind}"
        return sum(value for name, value in self.counts.items() if name.endswith(suffix))

    def response_time(self, rtd: int = 1) -> float:
        """Average of response time ``rtd`` over the run, in seconds (sipp's ``ResponseTime<n>(C)``)."""
        value = self.stats.get(f"ResponseTime{rtd}(C)", "")
        parts = value.split(":")
        if len(parts) != 4:
            raise KeyError(f"no response time {rtd} in {self.files.stats}")
        hours, minutes, seconds, micros = (int(part) for part in parts)
        return hours * 3600 + minutes * 60 + seconds + micros / 1_000_000

    def describe(self) -> str:
        """Everything needed to understand a failed run, for assertion messages."""
        lines = [
            f"sipp {self.scenario}: exit code {self.returncode}, {self.successful} successful and "
            f"{self.failed} failed of {self.created} calls in {self.elapsed:.2f} s"
            + (f", {self.unfinished} unfinished" if self.unfinished else "")
            + (", stopped" if self.stopped else "")
            + (", timed out" if self.timed_out else "")
            + (", killed" if self.killed else ""),
            f"command: {' '.join(self.argv)}",
            f"traces: {self.files.directory}",
        ]
        if self.failure_reasons:
            lines.append(f"failure reasons: {self.failure_reasons}")
        if self.error_log:
            lines.append(f"error log:\n{_tail(self.error_log)}")
        # sipp prints its errors to stderr too: only what the error log lacks is worth showing,
        # less its progress chatter.
        stderr = "\n".join(
            line
            for line in self.stderr.splitlines()
            if line not in self.error_log and not line.startswith(_STDERR_CHATTER)
        )
        if stderr:
            lines.append(f"stderr:\n{_tail(stderr, 2000)}")
        return "\n".join(lines)

    def assert_success(self, calls: int | None = None) -> None:
        """Exit code 0, no failed call and, when given, exactly ``calls`` successful ones."""
        if not self.ok or (calls is not None and self.successful != calls):
            expected = f"{calls} successful calls" if calls is not None else "success"
            raise AssertionError(f"expected {expected}\n{self.describe()}")

    def assert_failed(self, calls: int = 1) -> None:
        """Exit code 1 (some call failed) and exactly ``calls`` failed calls, none left running."""
        if self.returncode != 1 or self.failed != calls or self.unfinished or self.timed_out or self.killed:
            raise AssertionError(f"expected {calls} failed calls\n{self.describe()}")


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


_TCP_LISTEN: Final = "0A"


def _has_bound(pid: int, port: int, transport: Transport) -> bool:
    """Whether process ``pid`` holds the UDP socket / listening TCP socket of ``port``.

    Read from /proc instead of probing: a probe would be a SIP peer of its own (a stray datagram
    or connection the scenario would count), and binding the port to test it could steal it.
    """
    table = "udp" if transport == "u1" else "tcp"
    try:
        rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
    except OSError:
        return True  # no /proc (not Linux): fall back to trusting that sipp binds at once
    inodes = _socket_inodes(pid)
    for row in rows:
        columns = row.split()
        if len(columns) < 10:
            continue
        local_port = int(columns[1].rsplit(":", 1)[1], 16)
        if local_port == port and columns[9] in inodes and (table == "udp" or columns[3] == _TCP_LISTEN):
            return True
    return False


@dataclass
class Sipp:
    """One sipp run; see the module docstring. Construct, then ``start``/``run`` (or async forms)."""

    scenario: str | Path
    log_dir: Path
    #: ``"127.0.0.1:5060"`` or ``("127.0.0.1", 5060)``: a client run. None: a server run.
    remote: str | tuple[str, int] | None = None
    transport: Transport = "u1"
    #: Injection lines (the runner writes the CSV), or a CSV file of one's own.
    injection: Sequence[Sequence[str]] | Path | None = None
    injection_order: InjectionOrder = "SEQUENTIAL"
    #: -m: end the run after this many calls.
    calls: int | None = None
    #: -r and -rp: ``rate`` calls every ``rate_period_ms`` (sipp's default: 10 calls a second).
    rate: float | None = None
    rate_period_ms: int | None = None
    #: -l: at most this many calls at once.
    limit: int | None = None
    #: -timeout, with -timeout_error: the whole run, in seconds.
    timeout: float = 10.0
    #: -recv_timeout: how long any awaited message may take, in seconds; scenarios' ontimeout
    #: labels use it too.
    recv_timeout: float = 5.0
    #: -auth_uri: the digest uri without "sip:" (sipp's default is the remote host:port).
    auth_uri: str | None = None
    #: -key name value: [name] in the scenario's messages.
    keys: Mapping[str, str] = field(default_factory=dict)
    #: -trace_msg; benchmarks turn it off, every message costing a write.
    trace_messages: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    extra_args: Sequence[str] = ()
    #: -p: the port to send from and listen on (a carrier the gateway knows by its address);
    #: None picks a free one (and retries on another when it was taken meanwhile).
    local_port: int | None = None
    scenario_file: Path = field(init=False)
    build: SippBuild = field(init=False)
    #: Set when started.
    port: int = field(init=False, default=0)
    process: subprocess.Popen[bytes] | None = field(init=False, default=None)
    files: SippFiles | None = field(init=False, default=None)
    argv: tuple[str, ...] = field(init=False, default=())
    _started_at: float = field(init=False, default=0.0)
    _result: SippResult | None = field(init=False, default=None)
    _killed: bool = field(init=False, default=False)
    _stopped: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.scenario_file = scenario_path(self.scenario)
        self.build = sipp_build(require_tool("sipp"))
        if self.transport == "l1" and not self.build.tls:
            raise SippUnsupported(
                f"sipp {'.'.join(map(str, self.build.version))} ({'-'.join(sorted(self.build.options))}) "
                "has no TLS: it was built without OpenSSL, as Debian's sip-tester is"
            )
        if self.remote is not None:
            host, _ = self.remote_address
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError(f"sipp tests talk to 127.0.0.1 only, not {host}")

    @property
    def is_server(self) -> bool:
        return self.remote is None

    @property
    def remote_address(self) -> tuple[str, int]:
        if self.remote is None:
            raise ValueError("a server run has no remote")
        if isinstance(self.remote, tuple):
            return self.remote
        host, _, port = self.remote.rpartition(":")
        return host, int(port)

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>`` where this sipp listens/sends from, once started."""
        if not self.port:
            raise RuntimeError("sipp is not started")
        return f"{LOCAL_IP}:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("sipp is not started")
        return self.process.pid

    # -- starting ---------------------------------------------------------------------------

    def _run_dir(self) -> Path:
        """A fresh directory per run, so runs sharing a log_dir never mix their traces."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for number in range(1, 10_000):
            directory = self.log_dir / f"sipp-{self.scenario_file.stem}-{number}"
            try:
                directory.mkdir()
            except FileExistsError:
                continue
            return directory
        raise RuntimeError(f"too many sipp runs in {self.log_dir}")

    def _write_injection(self, directory: Path) -> Path | None:
        if self.injection is None or isinstance(self.injection, Path):
            return self.injection
        lines: list[str] = [self.injection_order]
        for row in self.injection:
            for value in row:
                if ";" in value or "\n" in value or "\r" in value:
                    raise ValueError(f"injection field {value!r} holds ';' or a line break")
            lines.append(";".join(row))
        path = directory / "injection.csv"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _command(self, files: SippFiles, port: int, control_port: int) -> list[str]:
        argv = [self.build.path]
        if self.remote is not None:
            host, remote_port = self.remote_address
            argv.append(f"{host}:{remote_port}")
        argv += [
            "-sf", str(self.scenario_file),
            "-t", self.transport,
            "-i", LOCAL_IP,
            "-p", str(port),
            "-bind_local",
            "-mi", LOCAL_IP,
            # sipp's remote-control socket: its default is UDP 8888 on all interfaces.
            "-ci", LOCAL_IP,
            "-cp", str(control_port),
            "-nostdin",
            "-timeout", f"{round(self.timeout * 1000)}ms",
            "-timeout_error",
            "-recv_timeout", f"{round(self.recv_timeout * 1000)}ms",
            "-trace_stat", "-stf", str(files.stats),
            "-trace_err", "-error_file", str(files.errors),
            "-trace_logs", "-log_file", str(files.scenario_log),
            "-trace_counts",
        ]  # fmt: skip
        if self.trace_messages:
            argv += ["-trace_msg", "-message_file", str(files.messages)]
        if self.is_server:
            argv += ["-deadcall_wait", "0"]
        if files.injection is not None:
            argv += ["-inf", str(files.injection)]
        if self.calls is not None:
            argv += ["-m", str(self.calls)]
        if self.rate is not None:
            argv += ["-r", f"{self.rate:g}"]
        if self.rate_period_ms is not None:
            argv += ["-rp", f"{self.rate_period_ms}ms"]
        if self.limit is not None:
            argv += ["-l", str(self.limit)]
        if self.auth_uri is not None:
            argv += ["-auth_uri", self.auth_uri]
        if self.tls_cert is not None:
            argv += ["-tls_cert", str(self.tls_cert)]
        if self.tls_key is not None:
            argv += ["-tls_key", str(self.tls_key)]
        for name, value in self.keys.items():
            argv += ["-key", name, value]
        argv += list(self.extra_args)
        return argv

    def _spawn(self) -> None:
        if self.process is not None:
            raise RuntimeError("sipp is already started")
        directory = self._run_dir()
        files = SippFiles(
            directory=directory,
            stats=directory / "stats.csv",
            errors=directory / "errors.log",
            messages=directory / "messages.log",
            scenario_log=directory / "scenario.log",
            screen=directory / "screen.log",
            stderr=directory / "stderr.log",
            injection=self._write_injection(directory),
        )
        port, control_port = self.local_port or free_port(), free_port()
        argv = self._command(files, port, control_port)
        with files.screen.open("wb") as screen, files.stderr.open("wb") as stderr:
            # sipp's screen (stdout) is only a progress display: kept for reading, never parsed.
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=screen, stderr=stderr, cwd=directory
            )
        self.port, self.files, self.argv = port, files, tuple(argv)
        self._started_at = time.monotonic()

    def _startup_state(self) -> Literal["ready", "waiting", "exited"]:
        assert self.process is not None
        if self.process.poll() is not None:
            return "exited"
        return "ready" if _has_bound(self.process.pid, self.port, self.transport) else "waiting"

    def _startup_failed(self) -> bool:
        """After an exit during startup: True to retry on other ports (they were taken)."""
        assert self.process is not None
        assert self.files is not None
        text = _read_text(self.files.stderr) + _read_text(self.files.errors)
        if "Unable to bind" in text:
            self.process = None
            return True
        if self.is_server:
            raise SippStartError(f"sipp server exited at start\n{self._finish().describe()}")
        return False  # a client may simply have finished already; its result says how

    def _startup_timed_out(self) -> None:
        self._kill()
        raise SippStartError(
            f"sipp did not bind port {self.port} in {_READY_TIMEOUT} s\n{self._finish().describe()}"
        )

    def _starting(self) -> Iterator[float]:
        """Start sipp, yielding how long to pause while it binds: ``start`` sleeps, ``start_async``
        awaits, the steps are the same."""
        for _ in range(_BIND_ATTEMPTS):
            self._spawn()
            deadline = time.monotonic() + _READY_TIMEOUT
            while (state := self._startup_state()) == "waiting" and time.monotonic() < deadline:
                yield _POLL_INTERVAL
            if state == "ready":
                return
            if state == "waiting":
                self._startup_timed_out()
            if not self._startup_failed():
                return
        raise SippStartError(f"sipp found no free port in {_BIND_ATTEMPTS} attempts; last run:\n{self.argv}")

    def start(self) -> Sipp:
        """Start sipp; return once it has bound its port (or, a client, has already ended)."""
        for pause in self._starting():
            time.sleep(pause)
        return self

    async def start_async(self) -> Sipp:
        """``start`` without blocking the event loop."""
        for pause in self._starting():
            await asyncio.sleep(pause)
        return self

    # -- ending -----------------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        if timeout is not None:
            return time.monotonic() + timeout
        return self._started_at + self.timeout + _EXIT_GRACE

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._killed = True
            self.process.kill()
            self.process.wait()

    def _finish(self) -> SippResult:
        """Reap sipp and read its traces (once)."""
        if self._result is not None:
            return self._result
        if self.process is None or self.files is None:
            raise RuntimeError("sipp is not started")
        returncode = self.process.wait()
        stats = _parse_stat_file(self.files.stats)
        errors = _read_text(self.files.errors) + _read_text(self.files.stderr)
        successful = _int_stat(stats, "SuccessfulCall(C)")
        failed = _int_stat(stats, "FailedCall(C)")
        created = _int_stat(stats, "TotalCallCreated")
        self._result = SippResult(
            scenario=self.scenario_file.name,
            argv=self.argv,
            returncode=returncode,
            successful=successful,
            failed=failed,
            created=created,
            unfinished=max(0, created - successful - failed),
            stats=stats,
            counts=_parse_counts_file(self.files.counts(self.scenario_file.stem, self.process.pid)),
            timed_out=" timed out after " in errors,
            killed=self._killed,
            stopped=self._stopped,
            elapsed=time.monotonic() - self._started_at,
            files=self.files,
        )
        return self._result

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to end by itself (its -m calls done, or its -timeout); kill it past
        ``timeout`` (default: its own timeout plus a grace period) and report it killed."""
        if self.process is None:
            raise RuntimeError("sipp is not started")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(max(0.0, self._deadline(timeout) - time.monotonic()))
        self._kill()
        return self._finish()

    async def wait_async(self, timeout: float | None = None) -> SippResult:
        """``wait`` without blocking the event loop."""
        if self.process is None:
            raise RuntimeError("sipp is not started")
        deadline = self._deadline(timeout)
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_INTERVAL)
        self._kill()
        return self._finish()

    def _terminate(self) -> None:
        # SIGTERM makes sipp quit at once, statistics written, exit code 0; calls still running
        # are counted neither successful nor failed (SippResult.unfinished).
        if self.process is not None and self.process.poll() is None:
            self._stopped = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = _EXIT_GRACE) -> SippResult:
        """End sipp now (a server whose peer is done, say) and read its traces."""
        if self.process is None:
            raise RuntimeError("sipp is not started")
        self._terminate()
        return self.wait(timeout)

    async def stop_async(self, timeout: float = _EXIT_GRACE) -> SippResult:
        if self.process is None:
            raise RuntimeError("sipp is not started")
        self._terminate()
        return await self.wait_async(timeout)

    def run(self) -> SippResult:
        """Start, and wait for sipp to end by itself (a client's usual life)."""
        try:
            return self.start().wait()
        finally:
            self._kill()

    async def run_async(self) -> SippResult:
        """``run`` without blocking the event loop; a cancelled run kills sipp."""
        try:
            await self.start_async()
            return await self.wait_async()
        finally:
            self._kill()

    @property
    def result(self) -> SippResult | None:
        """The result once ``wait``/``stop`` (or their async forms) returned."""
        return self._result

    def __enter__(self) -> Sipp:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self._result is None:
            self.stop()

    async def __aenter__(self) -> Sipp:
        return await self.start_async()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self._result is None:
            await self.stop_async()


__all__ = [
    "SCENARIO_DIR",
    "InjectionOrder",
    "MessageCount",
    "Sipp",
    "SippBuild",
    "SippFiles",
    "SippResult",
    "SippStartError",
    "SippUnsupported",
    "Transport",
    "authentication_field",
    "free_port",
    "register_row",
    "require_sipp",
    "scenario_path",
    "sipp_build",
]
