"""The browser agent of the tests: SIP.js 0.21 in headless Chromium, driven through Playwright.

``browser_agent()`` starts Debian's Chromium (never a Playwright-downloaded build) with a fresh
profile, loads ``tests/browser/harness.ts`` (bundled once per test run by esbuild from
``node_modules``, which ``make test`` installs with ``npm ci``) from a local HTTP server on
127.0.0.1, which is a secure context as getUserMedia requires, and yields a :class:`BrowserAgent`
whose methods call ``window.harness``::

    async with browser_agent() as agent:
        await agent.register(server="ws://127.0.0.1:8088/ws", aor="sip:100@example.test",
                             user="100", password="secret")
        assert (await agent.sent())[0].startswith("REGISTER ")
        call = await agent.invite("555123456")  # waits for the 2xx; AgentError otherwise
        heard = await agent.analyse_remote_audio(2.0)  # WebAudio FFT of the remote stream
        await agent.hangup()

A step that fails in the page raises :class:`AgentError` with the SIP status when there was one.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import shutil
import subprocess
import tempfile
import threading
import wave
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np
import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

from tests.support.tools import IN_CI, REPO_ROOT, require_tool

HARNESS_SOURCE = REPO_ROOT / "tests" / "browser" / "harness.ts"
#: The web UI's build script (``npm run build:web``); :func:`web_ui_bundle` runs it into a directory.
WEB_UI_BUILD = REPO_ROOT / "services" / "api" / "web" / "build.mjs"
NODE_MODULES = REPO_ROOT / "node_modules"

#: Flags for every browser. The machine has no route out: nothing may try to reach Google's
#: services, and QUIC/background fetches would only add noise and delays. The fake media devices
#: answer getUserMedia without a prompt; loopback candidates are off by default in Chromium.
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--allow-loopback-in-peer-connection",
)

#: How long one harness call may take before the test fails instead of hanging.
DEFAULT_STEP_TIMEOUT = 10.0

_INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>EchoDesk browser agent</title><link rel="icon" href="data:,"></head>
<body><script src="harness.js"></script></body></html>
"""

LogKind = Literal["sent", "received", "state", "sipjs"]


class AgentError(Exception):
    """A harness step that failed in the page; ``status``/``reason`` are the SIP final response's."""

    def __init__(self, status: int | None, reason: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    at_ms: int
    kind: LogKind
    text: str


@dataclass(frozen=True, slots=True)
class AgentState:
    user_agent: str | None
    transport: str | None
    registerer: str | None
    #: The call's SIP.js session state: Initial, Establishing, Established, Terminating, Terminated.
    session: str | None = None


@dataclass(frozen=True, slots=True)
class Registration:
    state: str
    contacts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Call:
    """An established call: the 2xx to the INVITE and the SDP answer it carried."""

    state: str
    status: int
    call_id: str
    answer: str


@dataclass(frozen=True, slots=True)
class IncomingCall:
    from_uri: str
    display_name: str
    call_id: str
    offer: str


@dataclass(frozen=True, slots=True)
class Hangup:
    state: str
    #: The BYE's final status (487 for a CANCELled INVITE); None when no answer came.
    status: int | None


@dataclass(frozen=True, slots=True)
class Referral:
    """A blind transfer asked by the page (RFC 3515): the REFER's answer and the gateway's reports."""

    status: int | None
    reason: str
    #: Each NOTIFY's sipfrag status line, in order ("SIP/2.0 100 Trying", then the final one).
    notifies: list[str]
    #: A NOTIFY ended the subscription (the final status came).
    terminated: bool


@dataclass(frozen=True, slots=True)
class MessageAnswer:
    """The final answer to a MESSAGE the agent sent."""

    status: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A MESSAGE the gateway delivered to the agent (SIP.js's ``onMessage`` delegate)."""

    from_uri: str
    display_name: str
    to_uri: str
    content_type: str
    body: str
    call_id: str


@dataclass(frozen=True, slots=True)
class AudioAnalysis:
    """The call's remote audio through WebAudio in the page (not the speakers, which are muted)."""

    dominant_hz: float
    #: 0..1 of full scale.
    rms: float
    #: Share of the power near the peak: close to 1 for a clean tone.
    purity: float
    sample_rate: float
    frames: int


@dataclass(frozen=True, slots=True)
class CallStats:
    """The page's RTCPeerConnection view of the call (getStats, picked)."""

    ice_connection_state: str | None
    connection_state: str | None
    dtls_state: str | None
    selected_pair: str | None
    packets_sent: int
    packets_received: int
    packets_lost: int
    codec: str | None


def _unavailable(message: str) -> NoReturn:
    # Same rule as require_tool: outside CI a missing piece skips, in CI it fails.
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@functools.cache
def harness_bundle() -> Path:
    """A directory holding index.html and the harness bundled into one IIFE, built once per run."""
    esbuild = NODE_MODULES / ".bin" / "esbuild"
    if not esbuild.exists():
        _unavailable("node_modules is not installed: run `npm ci` (make test does)")
    out_dir = Path(tempfile.mkdtemp(prefix="echodesk-harness-"))
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    subprocess.run(
        [
            str(esbuild),
            str(HARNESS_SOURCE),
            "--bundle",
            "--format=iife",
            "--platform=browser",
            "--target=chrome110",
            "--sourcemap=inline",
            "--log-level=warning",
            f"--outfile={out_dir / 'harness.js'}",
        ],
        check=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    (out_dir / "index.html").write_text(_INDEX_HTML)
    return out_dir


@functools.cache
def web_ui_bundle() -> Path:
    """The web UI's scripts built once per run by the project's own build script, into a directory
    of their own (the api serves it when ``ECHODESK_API_WEB_BUNDLE_DIR`` names it), so a test never
    serves a stale ``services/api/web/dist`` nor writes into the working tree."""
    if not (NODE_MODULES / "esbuild").exists():
        _unavailable("node_modules is not installed: run `npm ci` (make test does)")
    node = require_tool("node")
    out_dir = Path(tempfile.mkdtemp(prefix="echodesk-web-"))
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
    subprocess.run([node, str(WEB_UI_BUILD), str(out_dir)], check=True, cwd=REPO_ROOT, timeout=60)
    return out_dir


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep pytest's output for the test's own messages."""


@asynccontextmanager
async def _serve_directory(directory: Path) -> AsyncIterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # A short poll interval: shutdown() waits for the loop to notice, and the test waits for that.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="harness-http", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def chromium_args(*, fake_audio: Path | None = None, extra_args: Sequence[str] = ()) -> list[str]:
    """The command-line flags of one browser; ``fake_audio`` is a WAV the fake microphone plays."""
    args = list(CHROMIUM_FLAGS)
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    args.extend(extra_args)
    return args


class BrowserAgent:
    """One Chromium page running the harness: SIP.js as our softphone would run it."""

    def __init__(self, context: BrowserContext, page: Page, step_timeout: float) -> None:
        self.context = context
        self.page = page
        self.step_timeout = step_timeout
        #: The page's console lines and uncaught errors, for a failing test's report.
        self.console: list[str] = []
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    async def _call(self, method: str, *args: object, timeout: float | None = None) -> Any:
        # harness.call turns a rejection into a tagged result, so the SIP status survives the
        # trip out of the page (Playwright would flatten an exception into its message).
        script = f"args => window.harness.call(() => window.harness.{method}(...args))"
        outcome = await asyncio.wait_for(
            self.page.evaluate(script, list(args)), timeout if timeout is not None else self.step_timeout
        )
        if not outcome["ok"]:
            failure = outcome["failure"]
            raise AgentError(failure["status"], failure["reason"], f"{method}: {failure['message']}")
        return outcome["value"]

    async def start(self, **options: object) -> AgentState:
        """Create the UserAgent and open its WebSocket (``register`` does this itself)."""
        return _state(await self._call("start", _agent_options(options)))

    async def register(
        self,
        *,
        server: str,
        aor: str,
        user: str | None = None,
        password: str | None = None,
        display_name: str | None = None,
        instance_id: str | None = None,
        reg_id: int | None = None,
        expires: int | None = None,
        user_agent_string: str | None = None,
        connection_timeout: float | None = None,
        ice_gathering_timeout_ms: int | None = None,
    ) -> Registration:
        """Start if needed, REGISTER and wait for the outcome; raises :class:`AgentError` on failure."""
        options = _agent_options(
            {
                "server": server,
                "aor": aor,
                "user": user,
                "password": password,
                "displayName": display_name,
                "instanceId": instance_id,
                "regId": reg_id,
                "expires": expires,
                "userAgentString": user_agent_string,
                "connectionTimeout": connection_timeout,
                "iceGatheringTimeout": ice_gathering_timeout_ms,
            }
        )
        value = await self._call("register", options)
        return Registration(state=str(value["state"]), contacts=tuple(str(c) for c in value["contacts"]))

    async def disconnect(self) -> AgentState:
        """Drop the WebSocket as a failing network would; the call and the registerer stay."""
        return _state(await self._call("disconnect"))

    async def reconnect(self) -> Registration:
        """Open a new WebSocket and register again over it, with the options of ``register``."""
        value = await self._call("reconnect")
        return Registration(state=str(value["state"]), contacts=tuple(str(c) for c in value["contacts"]))

    async def invite(self, target: str, *, extra_headers: Sequence[str] = ()) -> Call:
        """INVITE ``target`` (a SIP URI, or a user in the AOR's domain) with the microphone's audio;
        waits until the call is established and raises :class:`AgentError` with the final status
        otherwise. A digest challenge is answered with the registration's credentials."""
        options = {"extraHeaders": list(extra_headers)} if extra_headers else {}
        value = await self._call("invite", target, options)
        return Call(
            state=str(value["state"]),
            status=int(value["status"]),
            call_id=str(value["callId"]),
            answer=str(value["answer"]),
        )

    async def wait_for_invite(self, timeout: float = 10.0) -> IncomingCall:
        """Wait until the gateway rings this agent (SIP.js answers 180 at once)."""
        value = await self._call("waitForInvite", int(timeout * 1000), timeout=timeout + 5)
        return IncomingCall(
            from_uri=str(value["from"]),
            display_name=str(value["displayName"]),
            call_id=str(value["callId"]),
            offer=str(value["offer"]),
        )

    async def accept(self) -> AgentState:
        """Answer the ringing call with the microphone; returns once it is established."""
        return _state(await self._call("accept", timeout=self.step_timeout + 10))

    async def reject(self, status: int = 486) -> AgentState:
        return _state(await self._call("reject", status))

    async def hangup(self) -> Hangup:
        """BYE an established call (CANCEL one being set up) and wait for the answer."""
        value = await self._call("hangup")
        status = value["status"]
        return Hangup(state=str(value["state"]), status=None if status is None else int(status))

    async def refer(self, target: str, timeout: float = 10.0) -> Referral:
        """Blind transfer of the current call to ``target`` (SIP.js ``session.refer``): the REFER's
        status and the NOTIFYs' sipfrags until the final one (or ``timeout``)."""
        value = await self._call("refer", target, int(timeout * 1000), timeout=timeout + 5)
        status = value["status"]
        return Referral(
            status=None if status is None else int(status),
            reason=str(value["reason"]),
            notifies=[str(n) for n in value["notifies"]],
            terminated=bool(value["terminated"]),
        )

    async def message(self, target: str, text: str, content_type: str = "text/plain") -> MessageAnswer:
        """Send ``text`` to ``target`` with SIP.js's ``Messager`` (RFC 3428 MESSAGE); the final
        status, whatever it is (a challenge is answered with the agent's credentials)."""
        value = await self._call("message", target, text, content_type)
        status = value["status"]
        return MessageAnswer(status=None if status is None else int(status), reason=str(value["reason"]))

    async def wait_for_message(self, timeout: float = 10.0) -> ReceivedMessage:
        """The next MESSAGE delivered to this agent (SIP.js answered it 200)."""
        value = await self._call("waitForMessage", int(timeout * 1000), timeout=timeout + 5)
        return ReceivedMessage(
            from_uri=str(value["from"]),
            display_name=str(value["displayName"]),
            to_uri=str(value["to"]),
            content_type=str(value["contentType"]),
            body=str(value["body"]),
            call_id=str(value["callId"]),
        )

    async def answer_messages_with(self, status: int) -> None:
        """Answer the MESSAGEs delivered from now on with ``status`` (200 accepts them)."""
        await self._call("answerMessagesWith", status)

    async def wait_for_session(self, state: str, timeout: float = 5.0) -> AgentState:
        """Wait until the call reaches ``state`` (e.g. "Terminated" after the far end's BYE)."""
        value = await self._call("waitForSession", state, int(timeout * 1000), timeout=timeout + 5)
        return _state(value)

    async def analyse_remote_audio(self, seconds: float) -> AudioAnalysis:
        """Listen to the call's remote audio for ``seconds`` (WebAudio FFT in the page)."""
        value = await self._call("analyseRemoteAudio", seconds, timeout=seconds + self.step_timeout)
        return AudioAnalysis(
            dominant_hz=float(value["dominantHz"]),
            rms=float(value["rms"]),
            purity=float(value["purity"]),
            sample_rate=float(value["sampleRate"]),
            frames=int(value["frames"]),
        )

    async def call_stats(self) -> CallStats:
        """ICE, DTLS, the selected candidate pair, RTP packet counts and codec of the call."""
        value = await self._call("callStats")
        return CallStats(
            ice_connection_state=value["iceConnectionState"],
            connection_state=value["connectionState"],
            dtls_state=value["dtlsState"],
            selected_pair=value["selectedPair"],
            packets_sent=int(value["packetsSent"]),
            packets_received=int(value["packetsReceived"]),
            packets_lost=int(value["packetsLost"]),
            codec=value["codec"],
        )

    async def unregister(self) -> AgentState:
        return _state(await self._call("unregister"))

    async def stop(self) -> AgentState:
        return _state(await self._call("stop"))

    async def state(self) -> AgentState:
        return _state(await asyncio.wait_for(self.page.evaluate("() => window.harness.state()"), 5))

    async def log(self, after_seq: int = 0) -> list[LogEntry]:
        raw = await asyncio.wait_for(self.page.evaluate("n => window.harness.log(n)", after_seq), 5)
        return [LogEntry(int(e["seq"]), int(e["at"]), e["kind"], str(e["text"])) for e in raw]

    async def sent(self) -> list[str]:
        """The SIP messages SIP.js wrote to its WebSocket, in order, as sent."""
        return [entry.text for entry in await self.log() if entry.kind == "sent"]

    async def received(self) -> list[str]:
        """The SIP messages that came in over the WebSocket, in order, as received."""
        return [entry.text for entry in await self.log() if entry.kind == "received"]

    async def print_report(self) -> None:
        """Print the harness log and the page console (pytest shows it when the test fails)."""
        print("--- browser agent log ---")
        try:
            for entry in await self.log():
                print(f"[{entry.at_ms:>7} ms] {entry.kind}: {entry.text.rstrip()}")
        except Exception as exc:  # the page may be what failed; still show the console
            print(f"(no harness log: {exc})")
        print("--- browser console ---")
        print("\n".join(self.console) or "(empty)")


def _agent_options(options: dict[str, object]) -> dict[str, object]:
    # Leave unset options out so the harness (and SIP.js) apply their defaults.
    return {name: value for name, value in options.items() if value is not None}


def _state(value: Any) -> AgentState:
    return AgentState(
        user_agent=value["userAgent"],
        transport=value["transport"],
        registerer=value["registerer"],
        session=value.get("session"),
    )


@asynccontextmanager
async def browser_agent(
    *,
    ignore_https_errors: bool = False,
    fake_audio: Path | None = None,
    extra_args: Sequence[str] = (),
    chromium: str | None = None,
    step_timeout: float = DEFAULT_STEP_TIMEOUT,
) -> AsyncIterator[BrowserAgent]:
    """Headless Chromium with the harness loaded; closed (profile removed) on exit.

    ``ignore_https_errors`` lets wss:// reach a test's self-signed certificate. ``chromium``
    overrides the browser found on PATH; without one the test skips (fails in CI).
    """
    executable = chromium or require_tool("chromium")
    bundle = harness_bundle()
    # Playwright's ignore_https_errors covers the page's WebSockets too (checked with Chromium 156),
    # so no --ignore-certificate-errors flag: browsers without the option still check certificates.
    args = chromium_args(fake_audio=fake_audio, extra_args=extra_args)
    with tempfile.TemporaryDirectory(prefix="echodesk-chromium-") as profile:
        async with _serve_directory(bundle) as origin, async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=args,
                ignore_https_errors=ignore_https_errors,
                timeout=30_000,
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                agent = BrowserAgent(context, page, step_timeout)
                await page.goto(f"{origin}/index.html", wait_until="load", timeout=15_000)
                await page.wait_for_function("() => window.harness !== undefined", timeout=5_000)
                if not await page.evaluate("() => window.isSecureContext"):
                    raise RuntimeError("the harness page is not a secure context: getUserMedia would fail")
                try:
                    yield agent
                except Exception:
                    # pytest shows a failing test's output: the page's view of what went wrong.
                    await agent.print_report()
                    raise
            finally:
                await context.close()


@asynccontextmanager
async def browser_page(
    *,
    fake_audio: Path | None = None,
    extra_args: Sequence[str] = (),
    ignore_https_errors: bool = False,
    chromium: str | None = None,
) -> AsyncIterator[Page]:
    """Headless Chromium with one empty page, for a test that drives a page the product serves
    (the web UI) instead of the harness; the page's console is printed if the test fails."""
    executable = chromium or require_tool("chromium")
    args = chromium_args(fake_audio=fake_audio, extra_args=extra_args)
    console: list[str] = []
    with tempfile.TemporaryDirectory(prefix="echodesk-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=executable,
                headless=True,
                args=args,
                ignore_https_errors=ignore_https_errors,
                viewport={"width": 1280, "height": 900},
                timeout=30_000,
            )
            try:
                page = context.pages[0] if context.pages else await context.new_page()
                page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
                page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
                try:
                    yield page
                except Exception:
                    print("--- browser console ---")
                    print("\n".join(console) or "(empty)")
                    raise
            finally:
                await context.close()


#: WebAudio may start an AudioContext without a user gesture only with this policy.
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"


def write_tone(path: Path, frequency: float, *, rate: int = 48_000, seconds: float = 1.0) -> Path:
    """A mono 16-bit WAV of a sine at half of full scale; Chromium's fake microphone loops it, so
    it holds a whole number of cycles (440 Hz over one second) and the loop is seamless."""
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.5 * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path
