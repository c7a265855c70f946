"""The web UI end to end: the whole stack as `make run` starts it (the supervisor: nats-server,
signaling, media, recorder, api) and Debian's headless Chromium on the pages the api serves.

- Sign in with the development admin key the api prints on its first start.
- Softphone: agent 100 registers over WSS (self-signed certificate) as an RFC 5626 instance,
  the E.164 preview shows what the dial plan makes of 555123456, the dial pad calls the echo line
  (*43) and the page hears its own 440 Hz tone back, sends DTMF, holds and resumes, hangs up;
  agent 101 talking to 100 takes 102's call as a second line (the first held), pauses its
  recording, swaps back and hears 100 again, hangs up on 102, calls 102 with 100 held, resumes
  100 and transfers 100 to 102; a
  call the dial plan refuses shows shared/outcomes.py's message for its status; signaling killed
  (the supervisor restarts it) puts the page into "reconnecting" and it registers again by itself.
- Trunks: a trunk saved with a port out of range shows the api's 422 next to the port field; saved
  right, "Test connection" follows signaling's registration with sipp as the carrier's registrar
  until it reads "registered".
- Call log: the echo call is listed and its detail shows the timeline of its events.

Every page is screenshotted into ``<tmp_path>/screenshots`` (the test prints the path). As the other
browser tests do, the test reruns itself in a network namespace with only loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from shared.outcomes import for_sip_status
from shared.settings import SERVICE_SETTINGS
from shared.supervisor import free_port
from tests.support.browser import AUTOPLAY, browser_page, web_ui_bundle, write_tone
from tests.support.netns import isolated, rerun_isolated
from tests.support.processes import free_ports_env
from tests.support.sipp import Sipp, require_sipp

pytestmark = [pytest.mark.needs_chromium, pytest.mark.needs_sipp, pytest.mark.needs_nats, pytest.mark.slow]

TONE_HZ = 440
#: Where the run inside the namespace writes the screenshots (set by the run outside it).
SCREENSHOTS_ENV = "ECHODESK_TEST_SCREENSHOTS"

#: WebAudio FFT of the page's remote audio (the <audio> element the softphone plays the call into).
ANALYSE_REMOTE_AUDIO = """async (seconds) => {
  const stream = document.getElementById("remote-audio").srcObject;
  if (!stream || stream.getAudioTracks().length === 0) throw new Error("no remote audio");
  const context = new AudioContext();
  await context.resume();
  const source = context.createMediaStreamSource(stream);
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const windowMs = (analyser.fftSize / context.sampleRate) * 1000;
  await sleep(windowMs);
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  const power = new Float64Array(analyser.frequencyBinCount);
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await sleep(windowMs);
    analyser.getFloatFrequencyData(spectrum);
    for (let i = 0; i < spectrum.length; i++) {
      power[i] += Number.isFinite(spectrum[i]) ? 10 ** (spectrum[i] / 10) : 0;
    }
  }
  const binHz = context.sampleRate / analyser.fftSize;
  let peak = Math.ceil(100 / binHz);
  for (let i = peak; i < power.length; i++) if (power[i] > power[peak]) peak = i;
  await context.close();
  return peak * binHz;
}"""


@dataclass
class Stack:
    process: subprocess.Popen[str]
    api_url: str
    lines: list[str] = field(default_factory=list)
    credentials: dict[str, str] = field(default_factory=dict)
    running: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "EchoDesk Voice is running" in line:
                self.running.set()
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("event") == "development admin API key":
                self.credentials["api_key"] = str(entry["api_key"])
            elif entry.get("event") == "development agent":
                self.credentials[f"agent {entry['extension']}"] = str(entry["password"])

    def child(self, service: str) -> int:
        """The pid of the supervisor's child running ``services.<service>``."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == self.process.pid and f"services.{service}".encode() in cmdline:
                return int(entry.name)
        raise AssertionError(f"no {service} process under the supervisor")


@asynccontextmanager
async def whole_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    env = {
        **os.environ,
        **free_ports_env(*SERVICE_SETTINGS),
        "ECHODESK_LOG_JSON": "true",
        "ECHODESK_API_WEB_BUNDLE_DIR": str(web_ui_bundle()),
        "ECHODESK_MEDIA_BIND_ADDRESS": "127.0.0.1",
        "ECHODESK_MEDIA_PUBLIC_ADDRESS": "127.0.0.1",
        "ECHODESK_SIGNALING_SIP_HOST": "127.0.0.1",
        "ECHODESK_SIGNALING_SIP_PUBLIC_HOST": "127.0.0.1",
    }
    rtp_low = free_port() & ~1
    env["ECHODESK_MEDIA_RTP_PORT_MIN"] = str(rtp_low)
    env["ECHODESK_MEDIA_RTP_PORT_MAX"] = str(rtp_low + 40)
    # The softphone is handed this address by webrtc-config; the certificate is the run command's
    # self-signed one for localhost, which the test's browser context accepts.
    env["ECHODESK_API_PUBLIC_SIP_WSS_URL"] = f"wss://127.0.0.1:{env['ECHODESK_SIGNALING_SIP_WSS_PORT']}/ws"
    process = subprocess.Popen(  # noqa: ASYNC220 - started once; its output is read by a thread
        [
            sys.executable,
            "-m",
            "shared",
            "run",
            "--data-dir",
            str(tmp_path / "data"),
            "--nats-port",
            str(free_port()),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stack = Stack(process, f"http://127.0.0.1:{env['ECHODESK_API_HTTP_PORT']}")
    reader = threading.Thread(target=stack.read, name="stack-output", daemon=True)
    reader.start()
    try:
        if not await asyncio.to_thread(stack.running.wait, 90):
            raise AssertionError("the stack did not come up:\n" + "".join(stack.lines[-80:]))
        assert {"api_key", "agent 100"} <= stack.credentials.keys(), "".join(stack.lines[-80:])
        yield stack
    except BaseException:
        print("--- stack output ---")
        print("".join(stack.lines[-200:]))
        raise
    finally:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(process.wait, 60)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)
        reader.join(5)


async def test_web_ui_softphone_trunks_and_call_log(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not isolated():
        # The screenshots go to this (outer) run's tmp_path, which outlives the namespace's run.
        shots = tmp_path / "screenshots"
        monkeypatch.setenv(SCREENSHOTS_ENV, str(shots))
        await asyncio.to_thread(rerun_isolated, request.node.nodeid, 420)
        print(f"screenshots of each page: {shots}")
        return
    require_sipp()
    shots = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    tone = write_tone(tmp_path / "tone-440.wav", TONE_HZ)
    carrier = Sipp("carrier_registrar_uas", tmp_path, injection=[["trunk1", "s3cret"]], calls=20, timeout=300)
    await carrier.start_async()
    try:
        async with (
            whole_stack(tmp_path) as stack,
            browser_page(fake_audio=tone, extra_args=(AUTOPLAY,), ignore_https_errors=True) as page,
        ):
            page.set_default_timeout(20_000)
            await sign_in(page, stack, shots)
            # A call log opened before any call: it follows the live events and lists each call.
            live = await page.context.new_page()
            await live.goto(f"{stack.api_url}/calls")
            await live.fill("#api-key", stack.credentials["api_key"])
            await live.click("#sign-in-form button[type=submit]")
            await expect(live.locator("#live-state")).to_have_attribute("data-state", "connected")
            await softphone(page, stack, shots)
            await trunks(page, carrier.port, shots)
            # Refused, echo, declined, answered (and transferred), the two second lines: all there
            # without a reload.
            await expect(live.locator("#calls tbody tr.row")).to_have_count(6)
            await live.close()
            await call_log(page, shots)
            await page.goto(f"{stack.api_url}/status")
            await expect(page.locator("#s tbody tr")).to_have_count(4, timeout=10_000)
            await page.screenshot(path=shots / "status.png", full_page=True)
    finally:
        await carrier.stop_async()
    assert sorted(p.name for p in shots.iterdir()) == [
        "calls-recording.png",
        "calls.png",
        "sign-in.png",
        "softphone-call-failed.png",
        "softphone-in-call.png",
        "softphone-incoming.png",
        "softphone-reconnecting.png",
        "softphone-transferred.png",
        "softphone-two-lines.png",
        "softphone.png",
        "status.png",
        "trunk-field-error.png",
        "trunk-tested.png",
    ]


async def sign_in(page: Page, stack: Stack, shots: Path | None = None) -> None:
    await page.goto(f"{stack.api_url}/")
    if shots is not None:
        # A wrong key is refused in words and the form stays.
        await page.fill("#api-key", "edk_not-a-key")
        await page.click("#sign-in-form button[type=submit]")
        await expect(page.locator("#api-key-error")).to_contain_text("invalid API key")
        await page.screenshot(path=shots / "sign-in.png", full_page=True)
    await page.fill("#api-key", stack.credentials["api_key"])
    await page.click("#sign-in-form button[type=submit]")
    await expect(page.locator("#setup")).to_be_visible()


async def choose_agent(page: Page, extension: str) -> None:
    """Pick the agent by extension once the page has listed the tenant's agents."""
    option = page.locator("#agent option").filter(has_text=re.compile(rf"^{extension} "))
    await expect(option).to_have_count(1)
    await page.select_option("#agent", await option.get_attribute("value"))


async def register(page: Page, stack: Stack, extension: str, *, debug: bool = False) -> None:
    await choose_agent(page, extension)
    await page.fill("#sip-password", stack.credentials[f"agent {extension}"])
    if debug:
        await page.check("#debug")
    await page.click("#register")
    await expect(page.locator("#registration-state")).to_have_attribute("data-state", "registered")


async def softphone(page: Page, stack: Stack, shots: Path) -> None:
    # A wrong SIP password: the registrar's refusal in words, and the agent can try again.
    await choose_agent(page, "100")
    await page.fill("#sip-password", "not-the-password")
    await page.click("#register")
    state = page.locator("#registration-state")
    await expect(state).to_have_attribute("data-state", "failed")
    await expect(state).to_contain_text("check the SIP user and password")
    await page.click("#unregister")
    await expect(page.locator("#setup")).to_be_visible()
    await register(page, stack, "100", debug=True)
    await expect(page.locator("#connection-state")).to_have_attribute("data-state", "connected")
    # RFC 5626: the REGISTER names this browser's instance and flow, so a reconnect is the same phone.
    log = page.locator("#log")
    await expect(log).to_contain_text("+sip.instance=")
    await expect(log).to_contain_text("reg-id=1")

    # The E.164 preview is the api's normalization in the tenant's region (GE).
    await page.fill("#number", "555123456")
    await expect(page.locator("#preview")).to_contain_text("+995555123456")
    await page.screenshot(path=shots / "softphone.png", full_page=True)

    # No trunk yet: the dial plan refuses the call, and the page says why in shared's words.
    await page.click("#call")
    await expect(page.locator("#call-state")).to_have_attribute("data-state", "ended")
    status = int(await page.get_attribute("#call-sip", "data-status") or 0)
    assert 400 <= status < 700, await page.inner_text("#call-sip")
    await expect(page.locator("#call-message")).to_have_text(for_sip_status(status).message)
    await page.screenshot(path=shots / "softphone-call-failed.png", full_page=True)

    # The echo line from the dial pad: the page hears its own microphone back.
    await page.fill("#number", "")
    for digit in "*43":
        await page.click(f'.key[data-digit="{digit}"]')
    await expect(page.locator("#number")).to_have_value("*43")
    await page.click("#call")
    await expect(page.locator("#call-state")).to_have_attribute("data-state", "established")
    # A figure, not an assertion: the page's own clock from placing the call to the answer applied
    # (microphone, ICE gathering, the INVITE, its 407 and the answer).
    print(f"echo call set up in {await page.get_attribute('#call-state', 'data-setup-ms')} ms")
    heard = await page.evaluate(ANALYSE_REMOTE_AUDIO, 1.5)
    assert heard == pytest.approx(TONE_HZ, abs=15), heard
    await page.click('.key[data-digit="5"]')
    await page.keyboard.press("#")
    await expect(page.locator("#dtmf-sent")).to_have_text("5#")
    await page.click("#hold")
    await expect(page.locator("#call-state")).to_have_attribute("data-state", "held")
    await page.click("#hold")
    await expect(page.locator("#call-state")).to_have_attribute("data-state", "established")
    await page.click("#mute")
    await expect(page.locator("#mute")).to_have_text("Unmute")
    await expect(page.locator("#call-timer")).not_to_have_text("")
    await page.screenshot(path=shots / "softphone-in-call.png", full_page=True)
    await page.click("#hangup")
    await expect(page.locator("#call-state")).to_have_attribute("data-state", "ended")
    await expect(page.locator("#call-message")).to_have_text("Call ended")

    # Agent 101 in a second tab: rings when 100 dials it, rejects once, then accepts.
    colleague = await page.context.new_page()
    await sign_in(colleague, stack)
    await register(colleague, stack, "101")
    await page.fill("#number", "101")
    await page.click("#call")
    await expect(colleague.locator("#call-state")).to_have_attribute("data-state", "incoming")
    await expect(colleague.locator("#accept")).to_be_visible()
    await colleague.click("#reject")
    await expect(page.locator("#call-state")).to_have_attribute("data-state", "ended")
    status = int(await page.get_attribute("#call-sip", "data-status") or 0)
    await expect(page.locator("#call-message")).to_have_text(for_sip_status(status).message)
    await page.click("#call")
    await expect(colleague.locator("#call-state")).to_have_attribute("data-state", "incoming")
    await expect(colleague).to_have_title(re.compile(r"^Incoming call: Agent 100"))
    await colleague.screenshot(path=shots / "softphone-incoming.png", full_page=True)
    await colleague.click("#accept")
    await expect(colleague.locator("#call-state")).to_have_attribute("data-state", "established")
    await expect(page.locator("#call-state")).to_have_attribute("data-state", "established")
    heard = await colleague.evaluate(ANALYSE_REMOTE_AUDIO, 1.5)
    assert heard == pytest.approx(TONE_HZ, abs=15), heard

    # Agent 102 in a third tab.
    created = await page.request.post(
        f"{stack.api_url}/v1/agents",
        data={"extension": "102", "password": "pw-102-transfer", "display_name": "Agent 102"},
        headers={"Authorization": f"Bearer {stack.credentials['api_key']}"},
    )
    assert created.status == 201, await created.text()
    stack.credentials["agent 102"] = "pw-102-transfer"
    third = await page.context.new_page()
    await sign_in(third, stack)
    await register(third, stack, "102")
    await call_waiting(colleague, page, third, shots)

    # 101 hands the call over to 102 (a blind transfer, RFC 3515 REFER): 102 rings in a third tab
    # and answers; 101's call ends as transferred, 100 talks to 102.
    await colleague.fill("#transfer-target", "102")
    await colleague.click("#transfer")
    await expect(third.locator("#call-state")).to_have_attribute("data-state", "incoming")
    await third.click("#accept")
    await expect(third.locator("#call-state")).to_have_attribute("data-state", "established")
    await expect(colleague.locator("#call-state")).to_have_attribute("data-state", "ended")
    await expect(colleague.locator("#call-message")).to_have_text("Call transferred")
    await expect(colleague.locator("#transfer-state")).to_have_text("Transferred to 102")
    await colleague.screenshot(path=shots / "softphone-transferred.png", full_page=True)
    await expect(page.locator("#call-state")).to_have_attribute("data-state", "established")
    heard = await third.evaluate(ANALYSE_REMOTE_AUDIO, 1.5)
    assert heard == pytest.approx(TONE_HZ, abs=15), heard
    await page.click("#hangup")
    await expect(third.locator("#call-state")).to_have_attribute("data-state", "ended")
    await colleague.close()
    await third.close()

    # The WebSocket drops (signaling dies; the supervisor starts it again): the page backs off,
    # reconnects and registers again without anybody touching it.
    os.kill(stack.child("signaling"), signal.SIGKILL)
    await expect(page.locator("#connection-state")).to_have_attribute("data-state", "reconnecting")
    await page.screenshot(path=shots / "softphone-reconnecting.png", full_page=True)
    await expect(page.locator("#registration-state")).to_have_attribute(
        "data-state", "registered", timeout=60_000
    )


async def call_waiting(agent: Page, first_party: Page, caller: Page, shots: Path) -> None:
    """While ``agent`` (101) talks to ``first_party`` (100), ``caller`` (102) rings it as a second
    line: the agent answers it (the first line goes on hold), pauses and resumes its recording,
    swaps back to the first line, where each side hears the other again, and hangs up the second;
    then calls 102 itself while the first line is up, hangs that up and resumes the first."""
    lines = agent.locator("#lines li")
    await caller.fill("#number", "101")
    await caller.click("#call")
    first, second = lines.nth(0), lines.nth(1)
    await expect(second).to_have_attribute("data-state", "incoming")
    await expect(first).to_have_attribute("data-state", "established")
    await expect(agent.locator("#accept")).to_be_visible()
    await second.locator("button[data-action=accept]").click()
    await expect(second).to_have_attribute("data-state", "established")
    await expect(first).to_have_attribute("data-state", "held")
    await expect(first.locator(".timer")).not_to_have_text("")
    await expect(caller.locator("#call-state")).to_have_attribute("data-state", "established")
    heard = await agent.evaluate(ANALYSE_REMOTE_AUDIO, 1.0)
    assert heard == pytest.approx(TONE_HZ, abs=15), heard
    # The agent pauses the talking line's recording (the api finds its call in the call log).
    pause = second.locator("button[data-action=recording]")
    await pause.click()
    try:
        await expect(pause).to_have_text("Resume recording")
    except AssertionError:
        # The page says why under the call (the api's refusal, or the call not found in the log).
        raise AssertionError(await agent.inner_text("#call-message")) from None
    await expect(agent.locator("#recording")).to_have_text("Resume recording")
    await agent.screenshot(path=shots / "softphone-two-lines.png", full_page=True)
    await pause.click()
    await expect(pause).to_have_text("Pause recording")
    # Swap: resuming the first line holds the second; the first is heard again, both ways (every
    # tab's microphone plays the same tone, so 100 hearing it shows 101 sends on the first line).
    await first.locator("button[data-action=resume]").click()
    await expect(first).to_have_attribute("data-state", "established")
    await expect(second).to_have_attribute("data-state", "held")
    heard = await agent.evaluate(ANALYSE_REMOTE_AUDIO, 1.0)
    assert heard == pytest.approx(TONE_HZ, abs=15), heard
    heard = await first_party.evaluate(ANALYSE_REMOTE_AUDIO, 1.0)
    assert heard == pytest.approx(TONE_HZ, abs=15), heard
    await second.locator("button[data-action=hangup]").click()
    await expect(second).to_have_attribute("data-state", "ended")
    await expect(caller.locator("#call-state")).to_have_attribute("data-state", "ended")
    await expect(agent.locator("#call-state")).to_have_attribute("data-state", "established")
    # A call placed while one is up: the first goes on hold; once the second is over, the main
    # panel shows the held line and resumes it.
    await agent.fill("#number", "102")
    await agent.click("#call")
    await expect(caller.locator("#call-state")).to_have_attribute("data-state", "incoming")
    await expect(first).to_have_attribute("data-state", "held")
    await caller.click("#accept")
    await expect(lines.nth(1)).to_have_attribute("data-state", "established")
    await expect(agent.locator("#call")).to_be_disabled()  # both lines taken
    await agent.click("#hangup")
    await expect(caller.locator("#call-state")).to_have_attribute("data-state", "ended")
    await expect(agent.locator("#call-state")).to_have_attribute("data-state", "held")
    await agent.click("#hold")
    await expect(first).to_have_attribute("data-state", "established")
    await expect(agent.locator("#call-state")).to_have_attribute("data-state", "established")


async def trunks(page: Page, carrier_port: int, shots: Path) -> None:
    await page.click("header a[href='/trunks']")
    await page.click("#new-trunk")
    await page.fill("input[name=name]", "Carrier")
    await page.fill("input[name=sip_server]", "127.0.0.1")
    await page.fill("input[name=sip_port]", "70000")
    await page.fill("input[name=username]", "trunk1")
    await page.fill("input[name=password]", "s3cret")
    await page.click("#save")
    error = page.locator("label[data-field=sip_port] .field-error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text("65535")
    await page.screenshot(path=shots / "trunk-field-error.png", full_page=True)

    await page.fill("input[name=sip_port]", str(carrier_port))
    await page.click("#save")
    await expect(page.locator("#form-saved")).to_contain_text("Saved")
    await expect(page.locator("label[data-field=sip_port] .field-error")).to_have_count(0)
    await expect(page.locator("#trunks tbody tr")).to_have_count(1)
    await page.click("#test-trunk")
    await expect(page.locator("#registration-result")).to_have_attribute("data-state", "registered")
    await page.screenshot(path=shots / "trunk-tested.png", full_page=True)


async def call_log(page: Page, shots: Path) -> None:
    await page.click("header a[href='/calls']")
    rows = page.locator("#calls tbody tr.row")
    # Filters: the one outbound call (refused by the dial plan), then the one busy call (declined).
    await page.select_option("#filters select[name=direction]", "outbound")
    await page.click("#filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("555123456")
    await page.select_option("#filters select[name=direction]", "")
    await page.select_option("#filters select[name=status]", "busy")
    await page.click("#filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("Line busy")
    await page.select_option("#filters select[name=status]", "")
    await page.click("#filters button[type=submit]")
    await expect(rows).to_have_count(6)  # refused, echo, declined, answered (transferred), two lines
    echo = page.locator("#calls tbody tr.row", has_text="*43")
    await expect(echo).to_have_count(1)
    await echo.click()
    timeline = page.locator("#timeline li")
    await expect(page.locator("#timeline li[data-type='call.ended']")).to_have_count(1)
    types = await timeline.evaluate_all("items => items.map(i => i.dataset.type)")
    assert types[0] == "call.created", types
    assert "call.answered" in types, types
    # The digits the page sent (a dial pad click and a key press) reached the gateway as SIP INFO.
    dtmf = page.locator("#timeline li[data-type='call.dtmf']")
    await expect(dtmf).to_have_count(2)
    await expect(dtmf.nth(0)).to_contain_text("digit=5")
    await expect(dtmf.nth(1)).to_contain_text("digit=#")
    await expect(dtmf.nth(1)).to_contain_text("method=sip-info")
    await page.screenshot(path=shots / "calls.png", full_page=True)

    # The call between the agents was recorded: once the recorder has finished, its detail plays it
    # through a signed link (no API key in the <audio> element's request).
    answered = (
        page.locator("#calls tbody tr.row")
        .filter(has=page.locator("td", has_text=re.compile(r"^100$")))
        .filter(has_text="101")
        .filter(has_text="completed")
    )
    await expect(answered).to_have_count(1)
    audio = page.locator("#recordings li[data-status=completed] audio")
    for _ in range(60):
        await answered.click()
        await expect(page.locator("#detail-facts")).to_contain_text("101")
        if await audio.count() == 1:
            break
        await asyncio.sleep(1)
    await expect(audio).to_have_count(1)
    assert "/v1/signed/" in (await audio.get_attribute("src") or "")
    duration = await audio.evaluate(
        """a => new Promise((resolve, reject) => {
            if (a.readyState >= 1) return resolve(a.duration);
            a.addEventListener("loadedmetadata", () => resolve(a.duration));
            a.addEventListener("error", () => reject(new Error(`audio error ${a.error?.code}`)));
        })"""
    )
    assert duration > 1.0, duration
    await page.screenshot(path=shots / "calls-recording.png", full_page=True)
