"""Headless Chromium answers our offer (a call that rings a browser): a plain page with an
RTCPeerConnection, no SIP. The worker's bridge (webrtc-rtp) joins it to a plain RTP peer playing the
carrier; Chromium's fake microphone plays 440 Hz and the carrier 1 kHz, each checked by FFT at the
other end. Then Chromium re-offers hold (sendonly) and resume as SIP.js does in a re-INVITE.
A second test has Chromium offer with its codecs restricted to Opus (a browser whose G.711 is switched
off): the bridge answers Opus and transcodes, and Chromium's DTMF (telephone-event at 48 kHz) reaches
the carrier at 8 kHz.

The test runs in a network namespace of its own with only loopback (tests/support/netns.py), so
Chromium's only candidate is 127.0.0.1 and nothing can leave; the page is served by Playwright's
request interception on http://127.0.0.1 (a secure context, as getUserMedia needs).
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Page, Route, async_playwright

from services.media.bridge import Bridge
from services.media.ports import PortRange
from services.media.webrtc import WebRtcMux, WebRtcSession
from shared.events import LegKind
from shared.media import CreateSession, RemoteDescription, SessionKind
from tests.support.browser import chromium_args
from tests.support.netns import isolated, rerun_isolated
from tests.support.rtp_peer import RtpPeer, analyse
from tests.support.tools import require_tool

pytestmark = pytest.mark.needs_chromium

HOST = "127.0.0.1"
ORIGIN = "http://127.0.0.1:9"
BROWSER_HZ = 440
CARRIER_HZ = 1000
#: WebAudio may start an AudioContext without a user gesture only with this policy.
AUTOPLAY = "--autoplay-policy=no-user-gesture-required"

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body>
<script>
const FFT_SIZE = 8192;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let pc = null;
const remote = new MediaStream();

async function until(predicate, ms, what) {
  const deadline = performance.now() + ms;
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

// Answer the gateway's offer as a softphone does when it picks up (JSEP 5.3), after gathering.
window.answerOffer = async (offer) => {
  const microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
  pc = new RTCPeerConnection({ iceServers: [] });
  pc.ontrack = (event) => remote.addTrack(event.track);
  await pc.setRemoteDescription({ type: "offer", sdp: offer });
  const [transceiver] = pc.getTransceivers();
  await transceiver.sender.replaceTrack(microphone.getAudioTracks()[0]);
  transceiver.direction = "sendrecv";
  await pc.setLocalDescription(await pc.createAnswer());
  await until(() => pc.iceGatheringState === "complete", 5000, "ICE gathering");
  return pc.localDescription.sdp;
};

// An offer with only the codecs whose MIME types are given (setCodecPreferences, RFC 8829 4.1.8.1).
window.makeOffer = async (mimeTypes) => {
  const microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
  pc = new RTCPeerConnection({ iceServers: [] });
  pc.ontrack = (event) => remote.addTrack(event.track);
  const transceiver = pc.addTransceiver(microphone.getAudioTracks()[0], { direction: "sendrecv" });
  const codecs = RTCRtpReceiver.getCapabilities("audio").codecs;
  transceiver.setCodecPreferences(codecs.filter((c) => mimeTypes.includes(c.mimeType.toLowerCase())));
  await pc.setLocalDescription(await pc.createOffer());
  await until(() => pc.iceGatheringState === "complete", 5000, "ICE gathering");
  return pc.localDescription.sdp;
};

// RFC 4733 events from the browser (RTCDTMFSender): SIP.js sends DTMF this way too.
window.sendDigits = (tones) => pc.getSenders()[0].dtmf.insertDTMF(tones, 120, 70);

window.waitConnected = async () => {
  const settled = () => pc.connectionState === "connected" || pc.connectionState === "failed";
  await until(settled, 10000, "connection");
  return pc.connectionState;
};

// A re-offer as SIP.js makes for hold (sendonly) and resume (sendrecv).
window.reoffer = async (direction) => {
  pc.getTransceivers()[0].direction = direction;
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
};
window.takeAnswer = async (sdp) => { await pc.setRemoteDescription({ type: "answer", sdp }); };

window.stats = async () => {
  const out = { packetsReceived: 0, packetsSent: 0, codec: null, dtlsState: null };
  (await pc.getStats()).forEach((report) => {
    if (report.type === "inbound-rtp") out.packetsReceived = report.packetsReceived;
    if (report.type === "outbound-rtp") out.packetsSent = report.packetsSent;
    if (report.type === "codec") out.codec = out.codec || report.mimeType;
    if (report.type === "transport") out.dtlsState = report.dtlsState;
  });
  return out;
};

// The remote audio's average power spectrum over `seconds`: dominant frequency, purity, RMS.
window.analyse = async (seconds) => {
  // Chromium feeds a remote track into WebAudio only while a media element plays it (crbug.com/933677).
  const element = new Audio();
  element.muted = true;
  element.srcObject = remote;
  await element.play();
  const context = new AudioContext();
  await context.resume();
  const source = context.createMediaStreamSource(remote);
  const analyser = context.createAnalyser();
  analyser.fftSize = FFT_SIZE;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  const windowMs = (FFT_SIZE / context.sampleRate) * 1000;
  await sleep(windowMs);
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  const power = new Float64Array(analyser.frequencyBinCount);
  const wave = new Float32Array(FFT_SIZE);
  let sumSquares = 0;
  let samples = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await sleep(windowMs);
    analyser.getFloatFrequencyData(spectrum);
    for (let i = 0; i < spectrum.length; i += 1) {
      power[i] += Number.isFinite(spectrum[i]) ? 10 ** (spectrum[i] / 10) : 0;
    }
    analyser.getFloatTimeDomainData(wave);
    for (const sample of wave) sumSquares += sample * sample;
    samples += wave.length;
  }
  source.disconnect();
  await context.close();
  const binHz = context.sampleRate / FFT_SIZE;
  const lowest = Math.ceil(100 / binHz);
  let peak = lowest;
  let total = 0;
  for (let i = lowest; i < power.length; i += 1) {
    total += power[i];
    if (power[i] > power[peak]) peak = i;
  }
  let band = 0;
  for (let i = peak - 3; i <= peak + 3; i += 1) band += power[i] || 0;
  const rms = Math.sqrt(sumSquares / Math.max(samples, 1));
  return { dominantHz: peak * binHz, purity: total > 0 ? band / total : 0, rms };
};
</script></body></html>
"""

_ports = itertools.count(26000, 100)


def write_tone(path: Path, frequency: float, *, rate: int = 48_000) -> Path:
    """One second of a sine at half of full scale, a whole number of cycles: the fake microphone
    loops it seamlessly."""
    t = np.arange(rate) / rate
    samples = (0.5 * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


async def until(predicate: Any, what: str, timeout: float = 10) -> None:
    """Wait for packets to move; the bound only turns a hang into a failure."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_chromium_answers_our_offer_with_audio_both_ways_then_holds_and_resumes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if not isolated():
        await asyncio.to_thread(rerun_isolated, request.node.nodeid)
        return
    chromium = require_tool("chromium")
    tone = write_tone(tmp_path / "tone.wav", BROWSER_HZ)
    mux = await WebRtcMux.listen(HOST, 0)
    carrier = await RtpPeer.open(HOST)
    low = next(_ports)
    bridge = Bridge(
        "s1",
        CreateSession(
            tenant_id="t1", call_id="c1", kind=SessionKind.WEBRTC_RTP, customer_offer=carrier.description()
        ),
        mux=mux,
        ports=PortRange(low, low + 99),
        rtp_host=HOST,
        advertised_address=HOST,
        on_digit=lambda leg, digit: None,
    )
    try:
        agent_sdp, customer_sdp = await bridge.open()
        assert agent_sdp is not None
        assert customer_sdp is not None
        carrier.learn(customer_sdp)
        carrier.start_tone(CARRIER_HZ)
        session = bridge.legs[LegKind.AGENT].media
        assert isinstance(session, WebRtcSession)
        with tempfile.TemporaryDirectory(prefix="echodesk-chromium-") as profile:
            async with async_playwright() as playwright:
                context = await playwright.chromium.launch_persistent_context(
                    profile,
                    executable_path=chromium,
                    headless=True,
                    args=chromium_args(fake_audio=tone, extra_args=(AUTOPLAY,)),
                    timeout=30_000,
                )
                try:
                    page = context.pages[0] if context.pages else await context.new_page()
                    await _call(page, bridge, session, carrier)
                finally:
                    await context.close()
    finally:
        bridge.close()
        carrier.close()
        mux.close()


async def _call(page: Page, bridge: Bridge, session: WebRtcSession, carrier: RtpPeer) -> None:
    async def serve(route: Route) -> None:
        await route.fulfill(body=PAGE, content_type="text/html")

    await page.route(f"{ORIGIN}/**", serve)
    await page.goto(f"{ORIGIN}/", wait_until="load", timeout=15_000)
    offer = bridge.legs[LegKind.AGENT].media
    assert isinstance(offer, WebRtcSession)
    assert offer.offer is not None
    answer: str = await page.evaluate("offer => window.answerOffer(offer)", offer.offer.serialize())
    # Chromium answers actpass with active: we are the DTLS server; it keeps our payload types.
    assert "a=setup:active" in answer
    # Its checks (and maybe its ClientHello) came before its answer reached us: answered at once.
    reply = bridge.update(RemoteDescription(leg=LegKind.AGENT, sdp=answer, type="answer"))
    assert reply.sdp is None
    assert await page.evaluate("() => window.waitConnected()") == "connected"

    heard = await page.evaluate("s => window.analyse(s)", 1.5)
    stats = await page.evaluate("() => window.stats()")
    await until(lambda: len(carrier.received) > 75, "the browser's audio at the carrier")
    carrier_heard = analyse(carrier.audio(last_seconds=1.0))
    print(f"chromium heard {heard}, carrier heard {carrier_heard}, stats {stats}, {session.counters}")
    assert heard["dominantHz"] == pytest.approx(CARRIER_HZ, abs=15), heard
    assert heard["purity"] > 0.8, heard
    assert heard["rms"] > 0.05, heard
    assert abs(carrier_heard["dominant_hz"] - BROWSER_HZ) <= 10, carrier_heard
    assert carrier_heard["purity"] > 0.9, carrier_heard
    assert stats["codec"] == "audio/PCMU", stats
    assert stats["dtlsState"] == "connected", stats
    assert session.counters.srtp_rejected == 0

    # Hold as SIP.js re-INVITEs: sendonly, answered recvonly; nothing more is sent to Chromium.
    held: str = await page.evaluate("d => window.reoffer(d)", "sendonly")
    local = bridge.update(RemoteDescription(leg=LegKind.AGENT, sdp=held, type="offer"))
    assert local.sdp is not None
    assert "a=recvonly" in local.sdp
    assert "a=setup:passive" in local.sdp
    await page.evaluate("sdp => window.takeAnswer(sdp)", local.sdp)
    sent, not_sent, to_carrier = session.counters.rtp_sent, session.counters.not_sent, len(carrier.received)
    await until(lambda: session.counters.not_sent > not_sent + 25, "media paused towards the held browser")
    assert session.counters.rtp_sent == sent
    await until(lambda: len(carrier.received) > to_carrier + 25, "the held browser still heard")

    resumed: str = await page.evaluate("d => window.reoffer(d)", "sendrecv")
    local = bridge.update(RemoteDescription(leg=LegKind.AGENT, sdp=resumed, type="offer"))
    assert local.sdp is not None
    assert "a=sendrecv" in local.sdp
    await page.evaluate("sdp => window.takeAnswer(sdp)", local.sdp)
    await until(lambda: session.counters.rtp_sent > sent + 25, "media resumed")
    heard = await page.evaluate("s => window.analyse(s)", 1.0)
    assert heard["dominantHz"] == pytest.approx(CARRIER_HZ, abs=15), heard
    assert heard["rms"] > 0.05, heard
    assert session.counters.srtp_rejected == 0


async def test_chromium_offering_only_opus_is_transcoded_with_its_dtmf(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if not isolated():
        await asyncio.to_thread(rerun_isolated, request.node.nodeid)
        return
    chromium = require_tool("chromium")
    tone = write_tone(tmp_path / "tone.wav", BROWSER_HZ)
    mux = await WebRtcMux.listen(HOST, 0)
    carrier = await RtpPeer.open(HOST)
    digits: list[str] = []
    with tempfile.TemporaryDirectory(prefix="echodesk-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=chromium_args(fake_audio=tone, extra_args=(AUTOPLAY,)),
                timeout=30_000,
            )
            bridge: Bridge | None = None
            try:
                page = context.pages[0] if context.pages else await context.new_page()

                async def serve(route: Route) -> None:
                    await route.fulfill(body=PAGE, content_type="text/html")

                await page.route(f"{ORIGIN}/**", serve)
                await page.goto(f"{ORIGIN}/", wait_until="load", timeout=15_000)
                offer: str = await page.evaluate(
                    "m => window.makeOffer(m)", ["audio/opus", "audio/telephone-event"]
                )
                assert "PCMU" not in offer
                low = next(_ports)
                bridge = Bridge(
                    "s2",
                    CreateSession(
                        tenant_id="t1",
                        call_id="c2",
                        kind=SessionKind.WEBRTC_RTP,
                        agent_offer=offer,
                        customer_offer=carrier.description(codecs="0"),
                    ),
                    mux=mux,
                    ports=PortRange(low, low + 99),
                    rtp_host=HOST,
                    advertised_address=HOST,
                    on_digit=lambda leg, digit: digits.append(f"{leg.value}:{digit.digit}"),
                )
                agent_sdp, customer_sdp = await bridge.open()
                assert agent_sdp is not None
                assert customer_sdp is not None
                assert "opus/48000/2" in agent_sdp
                assert "telephone-event/48000" in agent_sdp  # the event clock is Opus's (RFC 4733 2.1)
                carrier.learn(customer_sdp)
                carrier.start_tone(CARRIER_HZ)
                await page.evaluate("sdp => window.takeAnswer(sdp)", agent_sdp)
                assert await page.evaluate("() => window.waitConnected()") == "connected"
                heard = await page.evaluate("s => window.analyse(s)", 1.5)
                stats = await page.evaluate("() => window.stats()")
                await until(lambda: len(carrier.received) > 75, "the browser's audio at the carrier")
                carrier_heard = analyse(carrier.audio(last_seconds=1.0))
                session = bridge.legs[LegKind.AGENT].media
                assert isinstance(session, WebRtcSession)
                print(f"chromium heard {heard}, carrier heard {carrier_heard}, stats {stats}")
                assert stats["codec"] == "audio/opus", stats
                assert heard["dominantHz"] == pytest.approx(CARRIER_HZ, abs=15), heard
                assert heard["purity"] > 0.8, heard
                assert heard["rms"] > 0.05, heard
                assert abs(carrier_heard["dominant_hz"] - BROWSER_HZ) <= 10, carrier_heard
                assert carrier_heard["purity"] > 0.8, carrier_heard
                assert session.counters.srtp_rejected == 0

                await page.evaluate("t => window.sendDigits(t)", "5")
                await until(lambda: digits == ["agent:5"], "the browser's digit")
                await until(lambda: any(e["end"] for e in carrier.events()), "the digit's end at the carrier")
                events = carrier.events()
                assert {e["event"] for e in events} == {5}
                # 120 ms at the carrier's 8 kHz event clock (Chromium counts it at 48 kHz).
                assert 700 <= max(e["duration"] for e in events) <= 1300, events
            finally:
                if bridge is not None:
                    bridge.close()
                await context.close()
                carrier.close()
                mux.close()
