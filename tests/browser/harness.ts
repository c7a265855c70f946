// The test suite's browser agent: SIP.js 0.21 driven from pytest through `window.harness`.
//
// It uses SIP.js's own UserAgent and Registerer (not SimpleUser) so a test decides every step and
// sees every message: this is what our softphone runs, minus its UI. Every method is async and
// returns plain JSON, because Playwright hands results across the page boundary as JSON.
// Bundled into one IIFE by tests/support/browser.py with esbuild.

import {
  type Core,
  type Invitation,
  Inviter,
  type Message,
  Messager,
  Registerer,
  RegistererState,
  type Session,
  SessionState,
  type Transport,
  UserAgent,
  type UserAgentOptions,
  UserAgentState,
  Web,
} from "sip.js";

export interface AgentOptions {
  /** The gateway's SIP WebSocket URL, ws:// or wss://; SIP.js's `transportOptions.server`. */
  server: string;
  /** Address of record, e.g. "sip:100@example.test"; its host is also the registrar. */
  aor: string;
  user?: string;
  password?: string;
  displayName?: string;
  /** A UUID: SIP.js then adds +sip.instance and reg-id to the Contact (RFC 5626). */
  instanceId?: string;
  /** reg-id; SIP.js uses 1 when only instanceId is given. */
  regId?: number;
  /** Requested registration lifetime in seconds. */
  expires?: number;
  userAgentString?: string;
  /** Seconds SIP.js waits for the WebSocket to open. */
  connectionTimeout?: number;
  /** Milliseconds to wait for ICE candidates; SIP.js's default waits up to 5 s per offer or answer. */
  iceGatheringTimeout?: number;
}

export type LogKind = "sent" | "received" | "state" | "sipjs";

export interface LogEntry {
  seq: number;
  /** Milliseconds since the page loaded. */
  at: number;
  kind: LogKind;
  text: string;
}

export interface HarnessState {
  userAgent: string | null;
  transport: string | null;
  registerer: string | null;
  /** The call's SIP.js session state (Initial, Establishing, Established, Terminating, Terminated). */
  session: string | null;
}

export interface InviteOptions {
  /** Header lines added to the INVITE, e.g. "X-Tenant: acme". */
  extraHeaders?: string[];
}

export interface CallResult {
  state: string;
  /** The status of the final response to the INVITE. */
  status: number;
  callId: string;
  /** The SDP answer of the 2xx, as received. */
  answer: string;
}

/** A call the gateway rang this agent with (an inbound or internal call). */
export interface IncomingCall {
  /** The caller as the From header shows it: URI and display name. */
  from: string;
  displayName: string;
  callId: string;
  /** Our offer's SDP as the INVITE carried it. */
  offer: string;
}

export interface HangupResult {
  state: string;
  /** The final status of the BYE (or the CANCELled INVITE's 487); null when none came. */
  status: number | null;
}

/** The remote audio as WebAudio heard it (no speakers involved: Playwright mutes them). */
export interface ReferResult {
  /** The REFER's final status (202 when the gateway took the transfer on). */
  status: number | null;
  reason: string;
  /** The sipfrag of every NOTIFY of the transfer (RFC 3515 2.4.5), e.g. "SIP/2.0 100 Trying". */
  notifies: string[];
  /** Whether a NOTIFY ended the subscription (its final status came). */
  terminated: boolean;
}

export interface AudioAnalysis {
  /** Frequency of the strongest FFT bin, Hz (interpolated between bins). */
  dominantHz: number;
  /** Root mean square of the samples, 0..1 of full scale. */
  rms: number;
  /** Share of the spectrum's power within a few bins of the peak: near 1 for a clean tone. */
  purity: number;
  sampleRate: number;
  /** FFT frames averaged. */
  frames: number;
}

/** What the page's RTCPeerConnection reports about the call (its getStats, picked). */
export interface CallStats {
  iceConnectionState: string | null;
  connectionState: string | null;
  dtlsState: string | null;
  selectedPair: string | null;
  packetsSent: number;
  packetsReceived: number;
  packetsLost: number;
  codec: string | null;
}

export interface RegistrationResult {
  state: string;
  /** The Contact header values of the registrar's 2xx, as received. */
  contacts: string[];
}

/** What a test gets when a step fails: the SIP final response when there was one. */
export interface MessageResult {
  status: number | null;
  reason: string;
}

/** A MESSAGE the gateway delivered to this agent (RFC 3428), as SIP.js's delegate got it. */
export interface ReceivedMessage {
  from: string;
  displayName: string;
  to: string;
  contentType: string;
  body: string;
  callId: string;
}

export interface Failure {
  status: number | null;
  reason: string | null;
  message: string;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; failure: Failure };

class SipFailure extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
  ) {
    super(`${status} ${reason}`);
  }
}

const DEFAULT_EXPIRES = 600;
const DEFAULT_ICE_GATHERING_TIMEOUT_MS = 500;
/** 16384 samples at 48 kHz: 2.9 Hz bins over a third of a second. */
const FFT_SIZE = 16384;
/** Half-width, in bins, of the band around the peak counted as the tone (Blackman window leakage). */
const PEAK_BAND_BINS = 6;
/** Below this the spectrum is DC and rumble, never a tone of ours. */
const LOWEST_TONE_HZ = 60;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

class Harness {
  private ua: UserAgent | null = null;
  private registerer: Registerer | null = null;
  private session: Session | null = null;
  /** Calls that rang and were not taken yet, oldest first. */
  private incoming: Invitation[] = [];
  /** Text messages delivered and not taken by waitForMessage yet, oldest first. */
  private messages: ReceivedMessage[] = [];
  /** The status the next delivered MESSAGEs are answered with (200 accepts them). */
  private messageStatus = 200;
  private entries: LogEntry[] = [];
  private seq = 0;
  /** What start() was given: reconnect() registers again with it. */
  private options: AgentOptions | null = null;

  /** Create the user agent and open its WebSocket; a second call with the agent up does nothing. */
  async start(options: AgentOptions): Promise<HarnessState> {
    if (this.ua !== null) {
      return this.state();
    }
    const uri = UserAgent.makeURI(options.aor);
    if (uri === undefined) {
      throw new Error(`not a SIP URI: ${options.aor}`);
    }
    const uaOptions: UserAgentOptions = {
      uri,
      transportOptions: {
        server: options.server,
        connectionTimeout: options.connectionTimeout ?? 5,
        // Messages are captured below, in full; SIP.js's own trace would only duplicate them.
        traceSip: false,
      },
      // A softphone rings: 180 at once, then the test accepts or rejects (RFC 3261 13.3.1.1).
      delegate: {
        onInvite: (invitation: Invitation): void => {
          this.record("state", `incoming ${invitation.request.callId}`);
          invitation.stateChange.addListener((state) => this.record("state", `incoming ${state}`));
          this.incoming.push(invitation);
          invitation.progress().catch((error: unknown) => this.record("state", `progress failed: ${String(error)}`));
        },
        // A chat pane shows the text at once and says so with 200 (RFC 3428 7).
        onMessage: (message: Message): void => {
          const request = message.request;
          this.record("state", `message ${request.callId}`);
          if (this.messageStatus >= 300) {
            void message.reject({ statusCode: this.messageStatus });
            return;
          }
          this.messages.push({
            from: request.from.uri.toString(),
            displayName: request.from.displayName,
            to: request.to.uri.toString(),
            contentType: request.getHeader("Content-Type") ?? "",
            body: request.body ?? "",
            callId: request.callId,
          });
          void message.accept();
        },
      },
      authorizationUsername: options.user,
      authorizationPassword: options.password,
      displayName: options.displayName,
      instanceId: options.instanceId,
      userAgentString: options.userAgentString,
      sessionDescriptionHandlerFactoryOptions: {
        iceGatheringTimeout: options.iceGatheringTimeout ?? DEFAULT_ICE_GATHERING_TIMEOUT_MS,
        peerConnectionConfiguration: { iceServers: [] },
      },
      logBuiltinEnabled: false,
      logConfiguration: false,
      logLevel: "log",
      logConnector: (level, category, _label, content) => {
        this.record("sipjs", `${level} ${category}: ${content}`);
      },
    };
    const ua = new UserAgent(uaOptions);
    this.options = options;
    this.tap(ua.transport);
    ua.stateChange.addListener((state) => this.record("state", `userAgent ${state}`));
    ua.transport.stateChange.addListener((state) => this.record("state", `transport ${state}`));
    this.ua = ua;
    try {
      await ua.start();
    } catch (error: unknown) {
      // A failed connect leaves nothing behind, so the next call starts afresh.
      this.ua = null;
      await ua.stop();
      throw error;
    }
    return this.state();
  }

  /**
   * REGISTER (answering digest challenges with user/password) and wait for the final outcome.
   * Resolves when SIP.js considers itself registered; rejects with the final status otherwise.
   * The options take effect on the first call; call stop() before registering differently.
   */
  async register(options: AgentOptions): Promise<RegistrationResult> {
    await this.start(options);
    const ua = this.requireAgent();
    if (this.registerer === null) {
      const registerer = new Registerer(ua, {
        expires: options.expires ?? DEFAULT_EXPIRES,
        instanceId: options.instanceId,
        regId: options.regId,
        logConfiguration: false,
      });
      registerer.stateChange.addListener((state) => this.record("state", `registerer ${state}`));
      this.registerer = registerer;
    }
    const registerer = this.registerer;
    return new Promise<RegistrationResult>((resolve, reject) => {
      let settled = false;
      const settle = (action: () => void): void => {
        if (!settled) {
          settled = true;
          action();
        }
      };
      // SIP.js drops a 2xx without our Contact or its expires and calls no delegate, only moving
      // to Unregistered. On a rejection it moves there just before calling onReject, so the
      // state's verdict waits a microtask and the delegate's status wins.
      const onState = (state: RegistererState): void => {
        if (state === RegistererState.Unregistered || state === RegistererState.Terminated) {
          queueMicrotask(() => settle(() => reject(new Error(`REGISTER ended without a registration (${state})`))));
        }
      };
      registerer.stateChange.addListener(onState);
      const finish = (action: () => void): void => {
        registerer.stateChange.removeListener(onState);
        settle(action);
      };
      registerer
        .register({
          requestDelegate: {
            onAccept: (response) =>
              finish(() => resolve({ state: registerer.state, contacts: response.message.getHeaders("contact") })),
            onReject: (response) => finish(() => reject(failureOf(response))),
            onRedirect: (response) => finish(() => reject(failureOf(response))),
          },
        })
        .catch((error: unknown) => finish(() => reject(error)));
    });
  }

  /**
   * Drop the WebSocket as a failing network would, leaving the call (its media is not on the
   * socket) and the registerer as they are: what a café's Wi-Fi does to a softphone.
   */
  async disconnect(): Promise<HarnessState> {
    await this.requireAgent().transport.disconnect();
    return this.state();
  }

  /** Open a new WebSocket and REGISTER again over it: what the softphone does after a drop. */
  async reconnect(): Promise<RegistrationResult> {
    const options = this.options;
    if (options === null) {
      throw new Error("not started: call register() first");
    }
    await this.requireAgent().reconnect();
    return this.register(options);
  }

  /** REGISTER with expires 0 for our Contact; resolves with the registerer's state after the answer. */
  async unregister(): Promise<HarnessState> {
    const registerer = this.registerer;
    if (registerer === null) {
      throw new Error("not registered: call register() first");
    }
    await new Promise<void>((resolve, reject) => {
      registerer
        .unregister({
          requestDelegate: {
            onAccept: () => resolve(),
            onReject: (response) => reject(failureOf(response)),
          },
        })
        .catch(reject);
    });
    return this.state();
  }

  /** Dispose of the call, the registerer and the user agent (SIP.js ends and unregisters first). */
  async stop(): Promise<HarnessState> {
    const ua = this.ua;
    if (ua !== null && ua.state === UserAgentState.Started) {
      await ua.stop();
    }
    const state = this.state();
    this.registerer = null;
    this.session = null;
    this.ua = null;
    return state;
  }

  state(): HarnessState {
    return {
      userAgent: this.ua?.state ?? null,
      transport: this.ua?.transport.state ?? null,
      registerer: this.registerer?.state ?? null,
      session: this.session?.state ?? null,
    };
  }

  /**
   * INVITE `target` (a SIP URI, or a user part in the AOR's domain) with the microphone's audio,
   * answering a digest challenge with the agent's credentials, and wait for the outcome: resolves
   * once the session is Established (2xx, answer applied), rejects with the final status otherwise.
   */
  async invite(target: string, options: InviteOptions = {}): Promise<CallResult> {
    const ua = this.requireAgent();
    if (this.session !== null && this.session.state !== SessionState.Terminated) {
      throw new Error(`a call is already up (${this.session.state})`);
    }
    const uri = UserAgent.makeURI(target.includes(":") ? target : `sip:${target}@${ua.configuration.uri.host}`);
    if (uri === undefined) {
      throw new Error(`not a SIP URI: ${target}`);
    }
    const inviter = new Inviter(ua, uri, {
      extraHeaders: options.extraHeaders,
      sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } },
      delegate: {
        onSessionDescriptionHandler: (handler) => {
          if (handler instanceof Web.SessionDescriptionHandler) {
            this.watchPeerConnection(handler);
          }
        },
      },
    });
    this.session = inviter;
    inviter.stateChange.addListener((state) => this.record("state", `session ${state}`));
    return new Promise<CallResult>((resolve, reject) => {
      let accepted: Core.IncomingResponse | null = null;
      let settled = false;
      const settle = (action: () => void): void => {
        if (!settled) {
          settled = true;
          inviter.stateChange.removeListener(onState);
          action();
        }
      };
      // Established comes after the answer is applied; Terminated without a final response
      // (a failed offer, a transport error) still ends the wait.
      const onState = (state: SessionState): void => {
        if (state === SessionState.Established && accepted !== null) {
          const response = accepted.message;
          settle(() =>
            resolve({ state, status: response.statusCode ?? 0, callId: response.callId, answer: response.body }),
          );
        } else if (state === SessionState.Terminated) {
          queueMicrotask(() => settle(() => reject(new Error("the call ended before it was established"))));
        }
      };
      inviter.stateChange.addListener(onState);
      inviter
        .invite({
          requestDelegate: {
            onAccept: (response) => {
              accepted = response;
              onState(inviter.state);
            },
            onReject: (response) => settle(() => reject(failureOf(response))),
            onRedirect: (response) => settle(() => reject(failureOf(response))),
          },
        })
        .catch((error: unknown) => settle(() => reject(error)));
    });
  }

  /** Wait for the gateway to ring us; the call becomes this agent's current one. */
  async waitForInvite(timeoutMs: number): Promise<IncomingCall> {
    const deadline = performance.now() + timeoutMs;
    while (this.incoming.length === 0) {
      if (performance.now() > deadline) {
        throw new Error(`no call rang within ${timeoutMs} ms`);
      }
      await sleep(20);
    }
    const invitation = this.incoming.shift() as Invitation;
    this.session = invitation;
    const identity = invitation.remoteIdentity;
    return {
      from: identity.uri.toString(),
      displayName: identity.displayName,
      callId: invitation.request.callId,
      offer: invitation.request.body ?? "",
    };
  }

  /** Answer the ringing call with the microphone's audio; resolves once it is Established. */
  async accept(): Promise<HarnessState> {
    const session = this.requireSession();
    if (session instanceof Inviter) {
      throw new Error("the current call is one we placed: there is nothing to accept");
    }
    const invitation = session as Invitation;
    invitation.delegate = {
      onSessionDescriptionHandler: (handler) => {
        if (handler instanceof Web.SessionDescriptionHandler) {
          this.watchPeerConnection(handler);
        }
      },
    };
    await invitation.accept({ sessionDescriptionHandlerOptions: { constraints: { audio: true, video: false } } });
    await this.waitForSession(SessionState.Established, 10000);
    return this.state();
  }

  /** Decline the ringing call with `status` (486 busy, 603 decline). */
  async reject(status: number): Promise<HarnessState> {
    const session = this.requireSession();
    if (session instanceof Inviter) {
      throw new Error("the current call is one we placed: there is nothing to reject");
    }
    await (session as Invitation).reject({ statusCode: status });
    return this.state();
  }

  /** End the call: BYE when established, CANCEL while it is being set up; waits for the answer. */
  async hangup(): Promise<HangupResult> {
    const session = this.requireSession();
    if (session.state === SessionState.Established) {
      const status = await new Promise<number | null>((resolve, reject) => {
        session
          .bye({
            requestDelegate: {
              onAccept: (response) => resolve(response.message.statusCode ?? null),
              onReject: (response) => resolve(response.message.statusCode ?? null),
            },
          })
          .catch(reject);
      });
      return { state: session.state, status };
    }
    if (session instanceof Inviter && session.state === SessionState.Establishing) {
      await session.cancel();
      await this.waitForSession(SessionState.Terminated, 5000);
      return { state: session.state, status: 487 };
    }
    return { state: session.state, status: null };
  }

  /**
   * Blind transfer (RFC 3515): REFER the current call to `target` with SIP.js's `session.refer`, as a
   * softphone's transfer button does. Resolves with the REFER's final status and, when it was
   * accepted, the NOTIFYs' sipfrags until one terminated the subscription (or `timeoutMs` passed).
   */
  async refer(target: string, timeoutMs: number): Promise<ReferResult> {
    const ua = this.requireAgent();
    const session = this.requireSession();
    const uri = UserAgent.makeURI(target.includes(":") ? target : `sip:${target}@${ua.configuration.uri.host}`);
    if (uri === undefined) {
      throw new Error(`not a SIP URI: ${target}`);
    }
    const result: ReferResult = { status: null, reason: "", notifies: [], terminated: false };
    await new Promise<void>((resolve, reject) => {
      session
        .refer(uri, {
          requestDelegate: {
            onAccept: (response) => {
              result.status = response.message.statusCode ?? null;
              result.reason = response.message.reasonPhrase ?? "";
              resolve();
            },
            onReject: (response) => {
              result.status = response.message.statusCode ?? null;
              result.reason = response.message.reasonPhrase ?? "";
              resolve();
            },
          },
          onNotify: (notification) => {
            const request = notification.request;
            result.notifies.push((request.body ?? "").trim());
            if ((request.getHeader("Subscription-State") ?? "").toLowerCase().startsWith("terminated")) {
              result.terminated = true;
            }
            void notification.accept();
          },
        })
        .catch(reject);
    });
    const deadline = performance.now() + timeoutMs;
    while (result.status === 202 && !result.terminated && performance.now() < deadline) {
      await sleep(20);
    }
    return result;
  }

  /**
   * Send `text` to `target` (an extension, a number, or a SIP URI) with SIP.js's `Messager`, an
   * out-of-dialog MESSAGE (RFC 3428), answering a digest challenge with the agent's credentials.
   * Resolves with the final status, whatever it is.
   */
  async message(target: string, text: string, contentType = "text/plain"): Promise<MessageResult> {
    const ua = this.requireAgent();
    const uri = UserAgent.makeURI(target.includes(":") ? target : `sip:${target}@${ua.configuration.uri.host}`);
    if (uri === undefined) {
      throw new Error(`not a SIP URI: ${target}`);
    }
    const messager = new Messager(ua, uri, text, contentType);
    return new Promise<MessageResult>((resolve, reject) => {
      const settle = (response: Core.IncomingResponse): void =>
        resolve({ status: response.message.statusCode ?? null, reason: response.message.reasonPhrase ?? "" });
      messager.message({ requestDelegate: { onAccept: settle, onReject: settle } }).catch(reject);
    });
  }

  /** Wait for the next MESSAGE the gateway delivers to this agent. */
  async waitForMessage(timeoutMs: number): Promise<ReceivedMessage> {
    const deadline = performance.now() + timeoutMs;
    while (this.messages.length === 0) {
      if (performance.now() > deadline) {
        throw new Error(`no message within ${timeoutMs} ms`);
      }
      await sleep(20);
    }
    return this.messages.shift() as ReceivedMessage;
  }

  /** Answer the MESSAGEs delivered from now on with `status` (200 accepts; 4xx-6xx refuses). */
  async answerMessagesWith(status: number): Promise<number> {
    this.messageStatus = status;
    return status;
  }

  /** Wait until the call reaches `state` (e.g. Terminated after the far end's BYE). */
  async waitForSession(state: string, timeoutMs: number): Promise<HarnessState> {
    const session = this.requireSession();
    const deadline = performance.now() + timeoutMs;
    while (session.state !== state) {
      if (performance.now() > deadline) {
        throw new Error(`the call is ${session.state}, not ${state}, after ${timeoutMs} ms`);
      }
      await sleep(20);
    }
    return this.state();
  }

  /**
   * Listen to the call's remote audio for `seconds` through WebAudio and report its spectrum:
   * the average power spectrum of back-to-back FFT frames and the RMS of the samples.
   */
  async analyseRemoteAudio(seconds: number): Promise<AudioAnalysis> {
    const stream = this.requireHandler().remoteMediaStream;
    if (stream.getAudioTracks().length === 0) {
      throw new Error("the call has no remote audio track");
    }
    // Chromium feeds a remote WebRTC track into WebAudio only while a media element plays it
    // (crbug.com/933677); a muted element is enough, and nothing reaches the speakers.
    const element = new Audio();
    element.muted = true;
    element.srcObject = stream;
    await element.play();
    const context = new AudioContext();
    try {
      await context.resume();
      const source = context.createMediaStreamSource(stream);
      const analyser = context.createAnalyser();
      analyser.fftSize = FFT_SIZE;
      analyser.smoothingTimeConstant = 0;
      source.connect(analyser);
      const windowMs = (FFT_SIZE / context.sampleRate) * 1000;
      await sleep(windowMs); // the analyser's buffer then holds only the call's audio
      const spectrum = new Float32Array(analyser.frequencyBinCount);
      const power = new Float64Array(analyser.frequencyBinCount);
      const wave = new Float32Array(FFT_SIZE);
      let sumSquares = 0;
      let samples = 0;
      let frames = 0;
      const end = performance.now() + seconds * 1000;
      while (performance.now() < end) {
        await sleep(windowMs);
        analyser.getFloatFrequencyData(spectrum);
        for (let i = 0; i < spectrum.length; i += 1) {
          power[i] += Number.isFinite(spectrum[i]) ? 10 ** (spectrum[i] / 10) : 0;
        }
        analyser.getFloatTimeDomainData(wave);
        for (const sample of wave) {
          sumSquares += sample * sample;
        }
        samples += wave.length;
        frames += 1;
      }
      source.disconnect();
      const binHz = context.sampleRate / FFT_SIZE;
      let peak = Math.ceil(LOWEST_TONE_HZ / binHz);
      for (let i = peak; i < power.length; i += 1) {
        if (power[i] > power[peak]) {
          peak = i;
        }
      }
      let total = 0;
      let band = 0;
      for (let i = Math.ceil(LOWEST_TONE_HZ / binHz); i < power.length; i += 1) {
        total += power[i];
        if (Math.abs(i - peak) <= PEAK_BAND_BINS) {
          band += power[i];
        }
      }
      return {
        dominantHz: interpolatedPeak(power, peak) * binHz,
        rms: Math.sqrt(sumSquares / Math.max(samples, 1)),
        purity: total > 0 ? band / total : 0,
        sampleRate: context.sampleRate,
        frames,
      };
    } finally {
      await context.close();
      element.pause();
      element.srcObject = null;
    }
  }

  /** The call's transport as the RTCPeerConnection sees it: ICE, DTLS, packets, codec. */
  async callStats(): Promise<CallStats> {
    const connection = this.requireHandler().peerConnection;
    const result: CallStats = {
      iceConnectionState: connection?.iceConnectionState ?? null,
      connectionState: connection?.connectionState ?? null,
      dtlsState: null,
      selectedPair: null,
      packetsSent: 0,
      packetsReceived: 0,
      packetsLost: 0,
      codec: null,
    };
    if (connection === undefined) {
      return result;
    }
    const report = await connection.getStats();
    const entries = new Map<string, Record<string, unknown>>();
    report.forEach((value: Record<string, unknown>, key: string) => entries.set(key, value));
    const describe = (id: unknown): string => {
      const candidate = typeof id === "string" ? entries.get(id) : undefined;
      return candidate === undefined
        ? "?"
        : `${String(candidate.candidateType)} ${String(candidate.address)}:${String(candidate.port)}`;
    };
    for (const stat of entries.values()) {
      if (stat.type === "transport") {
        result.dtlsState = String(stat.dtlsState);
        const pair = typeof stat.selectedCandidatePairId === "string" ? entries.get(stat.selectedCandidatePairId) : undefined;
        if (pair !== undefined) {
          result.selectedPair = `${describe(pair.localCandidateId)} -> ${describe(pair.remoteCandidateId)} (${String(pair.state)})`;
        }
      } else if (stat.type === "outbound-rtp" && stat.kind === "audio") {
        result.packetsSent += Number(stat.packetsSent ?? 0);
      } else if (stat.type === "inbound-rtp" && stat.kind === "audio") {
        result.packetsReceived += Number(stat.packetsReceived ?? 0);
        result.packetsLost += Number(stat.packetsLost ?? 0);
        const codec = typeof stat.codecId === "string" ? entries.get(stat.codecId) : undefined;
        if (codec !== undefined) {
          result.codec = `${String(codec.mimeType)}/${String(codec.clockRate)}`;
        }
      }
    }
    return result;
  }

  /** Entries after `afterSeq` (all by default), oldest first. */
  log(afterSeq = 0): LogEntry[] {
    return this.entries.filter((entry) => entry.seq > afterSeq);
  }

  /** Wrap a method so Python gets a tagged result instead of an exception Playwright flattens to text. */
  async call<T>(step: () => Promise<T>): Promise<Outcome<T>> {
    try {
      return { ok: true, value: await step() };
    } catch (error: unknown) {
      return { ok: false, failure: describe(error) };
    }
  }

  private requireSession(): Session {
    if (this.session === null) {
      throw new Error("no call: call invite() first");
    }
    return this.session;
  }

  private requireHandler(): Web.SessionDescriptionHandler {
    const handler = this.requireSession().sessionDescriptionHandler;
    if (!(handler instanceof Web.SessionDescriptionHandler)) {
      throw new Error("the call has no WebRTC session description handler");
    }
    return handler;
  }

  // ICE, DTLS and gathering progress, into the log beside the SIP messages.
  private watchPeerConnection(handler: Web.SessionDescriptionHandler): void {
    const connection = handler.peerConnection;
    if (connection === undefined) {
      return;
    }
    connection.addEventListener("icegatheringstatechange", () =>
      this.record("state", `iceGathering ${connection.iceGatheringState}`),
    );
    connection.addEventListener("iceconnectionstatechange", () =>
      this.record("state", `ice ${connection.iceConnectionState}`),
    );
    connection.addEventListener("connectionstatechange", () =>
      this.record("state", `peerConnection ${connection.connectionState}`),
    );
    connection.addEventListener("icecandidate", (event) =>
      this.record("state", `localCandidate ${event.candidate?.candidate ?? "(end)"}`),
    );
    connection.addEventListener("track", (event) => this.record("state", `remoteTrack ${event.track.kind}`));
  }

  private requireAgent(): UserAgent {
    if (this.ua === null) {
      throw new Error("no user agent: call start() first");
    }
    return this.ua;
  }

  private record(kind: LogKind, text: string): void {
    this.seq += 1;
    this.entries.push({ seq: this.seq, at: Math.round(performance.now()), kind, text });
  }

  // The UserAgent installs its callbacks on the transport when constructed: wrapping them here
  // sees every message in both directions exactly as it crossed the WebSocket.
  private tap(transport: Transport): void {
    const send = transport.send.bind(transport);
    transport.send = (message: string): Promise<void> => {
      this.record("sent", message);
      return send(message);
    };
    const onMessage = transport.onMessage;
    transport.onMessage = (message: string): void => {
      this.record("received", message);
      onMessage?.(message);
    };
  }
}

function failureOf(response: Core.IncomingResponse): SipFailure {
  return new SipFailure(response.message.statusCode ?? 0, response.message.reasonPhrase ?? "");
}

/** Parabolic interpolation of a spectral peak: its position in (fractional) bins. */
function interpolatedPeak(power: Float64Array, peak: number): number {
  if (peak <= 0 || peak >= power.length - 1) {
    return peak;
  }
  const [a, b, c] = [power[peak - 1], power[peak], power[peak + 1]].map((p) => 10 * Math.log10(p + 1e-30));
  const denominator = a - 2 * b + c;
  return denominator === 0 ? peak : peak + (0.5 * (a - c)) / denominator;
}

function describe(error: unknown): Failure {
  if (error instanceof SipFailure) {
    return { status: error.status, reason: error.reason, message: error.message };
  }
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return { status: null, reason: null, message };
}

declare global {
  interface Window {
    harness: Harness;
  }
}

window.harness = new Harness();
