// The test suite's browser agent: SIP.js 0.21 driven from pytest through `window.harness`.
//
// It uses SIP.js's own UserAgent and Registerer (not SimpleUser) so a test decides every step and
// sees every message: this is what our softphone runs, minus its UI. Every method is async and
// returns plain JSON, because Playwright hands results across the page boundary as JSON.
// Bundled into one IIFE by tests/support/browser.py with esbuild.

import {
  type Core,
  Registerer,
  RegistererState,
  type Transport,
  UserAgent,
  type UserAgentOptions,
  UserAgentState,
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
}

export interface RegistrationResult {
  state: string;
  /** The Contact header values of the registrar's 2xx, as received. */
  contacts: string[];
}

/** What a test gets when a step fails: the SIP final response when there was one. */
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

class Harness {
  private ua: UserAgent | null = null;
  private registerer: Registerer | null = null;
  private entries: LogEntry[] = [];
  private seq = 0;

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

  /** Dispose of the registerer and the user agent (SIP.js unregisters first if registered). */
  async stop(): Promise<HarnessState> {
    const ua = this.ua;
    if (ua !== null && ua.state === UserAgentState.Started) {
      await ua.stop();
    }
    const state = this.state();
    this.registerer = null;
    this.ua = null;
    return state;
  }

  state(): HarnessState {
    return {
      userAgent: this.ua?.state ?? null,
      transport: this.ua?.transport.state ?? null,
      registerer: this.registerer?.state ?? null,
    };
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
