/**
 * The softphone's SIP side: one SIP.js 0.21 UserAgent over the gateway's WebSocket, its
 * registration, and its calls: up to two lines, one talking and the other held or ringing. What the old product did in the browser is kept here:
 * echo cancellation, noise suppression and automatic gain control on the microphone; the STUN and
 * TURN servers of the agent's webrtc-config; reconnection with backoff when the WebSocket drops
 * (SIP.js does not reconnect by itself), re-registering as the same instance (RFC 5626 4.1:
 * +sip.instance and reg-id); and a short ICE gathering wait (the gateway is ICE-lite and answers
 * with its one candidate, so waiting SIP.js's default 5 s for more candidates is pure delay).
 */

import {
  type Invitation,
  Inviter,
  type Message,
  Messager,
  Registerer,
  RegistererState,
  RequestPendingError,
  type Session,
  SessionState,
  UserAgent,
  type UserAgentOptions,
  Web,
} from "sip.js";

import { Backoff } from "./backoff";

/** The microphone the way the old product asked for it. */
export const AUDIO_CONSTRAINTS: MediaStreamConstraints = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
  video: false,
};

/** ms; Chromium gathers host and server-reflexive candidates well within this on a working network. */
export const ICE_GATHERING_TIMEOUT_MS = 500;
/** s; short so that a browser closed without un-REGISTER stops being rung soon. */
const REGISTER_EXPIRES_S = 300;
/** Calls at once, as the gateway's default max_concurrent_calls per agent: one talking, one held or ringing. */
export const MAX_LINES = 2;

/** The user part of a dialed number: digits, *, # (escaped, RFC 3261 25.1) and a leading +. */
function dialable(typed: string): string {
  return typed.replace(/[^0-9*#+]/g, "").replace(/#/g, "%23");
}

export interface PhoneConfig {
  server: string;
  uri: string;
  authorizationUsername: string;
  password: string;
  displayName: string | null;
  iceServers: RTCIceServer[];
  /** Stable per agent and browser: a reconnected tab is the same phone (RFC 5626 4.1). */
  instanceId: string;
}

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "disconnected";
export type RegistrationState = "unregistered" | "registering" | "registered" | "failed";
export type CallState = "calling" | "ringing" | "incoming" | "established" | "held" | "ended";

export interface CallView {
  /** The line: 1, 2, ... in the order calls came up on this page. */
  id: number;
  state: CallState;
  direction: "outbound" | "inbound";
  party: string;
  /** The other party's number as the call log has it (dialed, or the caller's user part). */
  number: string;
  /** When the call was answered (Date.now()), for the timer. */
  answeredAt: number | null;
  muted: boolean;
  /** Why the call ended or failed, in words; null while it is up. */
  message: string | null;
  sipStatus: number | null;
  sipReason: string | null;
  /** How a transfer of this call is going, in words; null when none was asked for. */
  transfer: string | null;
  /** ms from placing (or accepting) the call to its answer being applied. */
  setupMs: number | null;
}

export interface PhoneEvents {
  connection(state: ConnectionState, detail: string): void;
  registration(state: RegistrationState, detail: string): void;
  /** A line changed (a new line, or a state, a message, a transfer of one). */
  call(view: CallView): void;
  log(level: string, text: string): void;
  /** A text message arrived (RFC 3428 MESSAGE): who from (a number or extension), their name, the text. */
  message(from: string, displayName: string, text: string): void;
}

/** The final answer to a message sent: 200 delivered, 202 kept for an agent not registered. */
export interface MessageAnswer {
  status: number;
  reason: string;
}

export class Phone {
  private readonly ua: UserAgent;
  private readonly registerer: Registerer;
  private readonly backoff = new Backoff();
  private retryTimer: number | null = null;
  private stopped = false;
  private readonly lines = new Map<number, Line>();
  private nextLine = 1;
  /** The session whose audio the <audio> element plays (the unheld line's). */
  private playing: Session | null = null;
  /** Whether SIP.js's debug output (every SIP message) goes to the log panel and the console. */
  debug = false;

  constructor(
    private readonly config: PhoneConfig,
    private readonly events: PhoneEvents,
    private readonly messageFor: (sipStatus: number) => string,
    private readonly remoteAudio: HTMLAudioElement,
  ) {
    const uri = UserAgent.makeURI(config.uri);
    if (uri === undefined) {
      throw new Error(`not a SIP URI: ${config.uri}`);
    }
    const options: UserAgentOptions = {
      uri,
      authorizationUsername: config.authorizationUsername,
      authorizationPassword: config.password,
      displayName: config.displayName ?? undefined,
      instanceId: config.instanceId,
      transportOptions: { server: config.server, connectionTimeout: 5, traceSip: true },
      sessionDescriptionHandlerFactoryOptions: {
        iceGatheringTimeout: ICE_GATHERING_TIMEOUT_MS,
        peerConnectionConfiguration: { iceServers: config.iceServers },
      },
      // Everything reaches the connector; it drops debug output unless the switch is on.
      logBuiltinEnabled: false,
      logLevel: "debug",
      logConfiguration: false,
      logConnector: (level, category, _label, content) => {
        if (this.debug || level === "warn" || level === "error") {
          this.events.log(level, `${category}: ${String(content)}`);
        }
      },
      delegate: {
        onConnect: () => this.onConnect(),
        onDisconnect: (error) => this.onDisconnect(error),
        onInvite: (invitation) => this.onInvite(invitation),
        onMessage: (message) => this.onMessage(message),
      },
    };
    this.ua = new UserAgent(options);
    this.registerer = new Registerer(this.ua, {
      expires: REGISTER_EXPIRES_S,
      instanceId: config.instanceId,
      regId: 1,
      logConfiguration: false,
    });
    this.registerer.stateChange.addListener((state) => {
      if (state === RegistererState.Registered) {
        this.events.registration("registered", "");
      } else if (state === RegistererState.Unregistered || state === RegistererState.Terminated) {
        this.events.registration("unregistered", "");
      }
    });
    window.addEventListener("online", () => this.retryNow());
  }

  /** Connect and register; a failed connection is retried with backoff until stop(). */
  start(): void {
    this.events.connection("connecting", this.config.server);
    this.ua.start().catch((error: unknown) => this.scheduleRetry(error));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.clearRetry();
    if (this.registerer.state === RegistererState.Registered) {
      await this.registerer.unregister().catch(() => undefined);
    }
    await this.ua.stop();
    this.events.connection("disconnected", "signed out");
  }

  private onConnect(): void {
    this.backoff.reset();
    this.clearRetry();
    this.events.connection("connected", this.config.server);
    this.register();
  }

  private register(): void {
    this.events.registration("registering", "");
    const delegate = {
      // After a reconnect the registerer may still think itself Registered (SIP.js keeps its
      // state over a lost WebSocket), so the 2xx changes no state: report it from here.
      onAccept: (): void => this.events.registration("registered", ""),
      onReject: (response: { message: { statusCode?: number; reasonPhrase?: string } }): void => {
        const statusCode = response.message.statusCode ?? 0;
        const reasonPhrase = response.message.reasonPhrase ?? "";
        const hint = statusCode === 401 || statusCode === 403 || statusCode === 407
          ? "check the SIP user and password"
          : this.messageFor(statusCode);
        this.events.registration("failed", `${statusCode} ${reasonPhrase}: ${hint}`);
      },
    };
    this.registerer.register({ requestDelegate: delegate }).catch((error: unknown) => {
      // A REGISTER still waiting for its answer (a refresh sent on the dropped connection, whose
      // answer will never come): try again once that one has given up.
      if (error instanceof RequestPendingError) {
        window.setTimeout(() => {
          if (!this.stopped && this.ua.isConnected()) {
            this.register();
          }
        }, 2000);
      } else {
        this.events.registration("failed", String(error));
      }
    });
  }

  private onDisconnect(error?: Error): void {
    if (this.stopped) {
      return;
    }
    // SIP.js calls this with an error only when the connection was lost, not closed by us.
    this.events.registration("unregistered", "connection lost");
    this.scheduleRetry(error ?? new Error("the WebSocket closed"));
  }

  private scheduleRetry(error: unknown): void {
    if (this.stopped) {
      return;
    }
    this.clearRetry();
    const wait = this.backoff.next();
    this.events.connection(
      "reconnecting",
      `${error instanceof Error ? error.message : String(error)}; attempt ${this.backoff.attempts} in ${(wait / 1000).toFixed(1)} s`,
    );
    this.retryTimer = window.setTimeout(() => this.retryNow(), wait);
  }

  private retryNow(): void {
    if (this.stopped || this.ua.isConnected()) {
      return;
    }
    this.clearRetry();
    this.events.connection("connecting", this.config.server);
    this.ua.reconnect().catch((error: unknown) => this.scheduleRetry(error));
  }

  private clearRetry(): void {
    if (this.retryTimer !== null) {
      window.clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
  }

  // --- text messages (RFC 3428) ---------------------------------------------------------------

  /** Send `text` to `to` (an extension or a number, as dialed) with SIP.js's Messager. */
  async sendMessage(to: string, text: string): Promise<MessageAnswer> {
    const user = dialable(to);
    if (user === "" || text === "") {
      throw new Error("type who to write to and a message");
    }
    const target = UserAgent.makeURI(`sip:${user}@${this.ua.configuration.uri.host}`);
    if (target === undefined) {
      throw new Error(`cannot write to ${to}`);
    }
    const messager = new Messager(this.ua, target, text, "text/plain;charset=UTF-8");
    return new Promise<MessageAnswer>((resolve, reject) => {
      const settle = (response: { message: { statusCode?: number; reasonPhrase?: string } }): void =>
        resolve({ status: response.message.statusCode ?? 0, reason: response.message.reasonPhrase ?? "" });
      messager.message({ requestDelegate: { onAccept: settle, onReject: settle } }).catch(reject);
    });
  }

  private onMessage(message: Message): void {
    const request = message.request;
    const from = request.from.uri.user ?? request.from.uri.toString();
    this.events.message(from, request.from.displayName, request.body ?? "");
    // The text is on the screen: 200 tells the gateway (and its sender) it was delivered.
    message.accept().catch((error: unknown) => this.events.log("warn", `message not answered: ${String(error)}`));
  }

  // --- calls ---------------------------------------------------------------------------------
  //
  // Several lines (call waiting): the agent has up to MAX_LINES calls at once, and at most one of
  // them is unheld. Answering or placing a call, or resuming a held one, first holds the line that
  // is talking (a sendonly re-INVITE, RFC 3264 8.4), so the party on it does not hear the other
  // conversation. The gateway rings an agent while a call is up as long as the agent's
  // max_concurrent_calls (2 by default) allows.

  /** The lines that are not over yet, oldest first. */
  private live(): Line[] {
    return [...this.lines.values()].filter((line) => line.view.state !== "ended");
  }

  /** The line the main controls act on: the one talking or being set up, else the newest not over. */
  current(): number | null {
    const live = this.live();
    const talking = live.find((line) => line.view.state !== "held" && line.view.state !== "incoming");
    return (talking ?? live[live.length - 1] ?? null)?.view.id ?? null;
  }

  /** Call `number` (digits as typed: a phone number, an extension or a service code like *43). */
  async call(number: string): Promise<void> {
    if (this.live().length >= MAX_LINES) {
      throw new Error(`${MAX_LINES} calls are up: hang one up first`);
    }
    const user = dialable(number);
    if (user === "") {
      throw new Error("type a number first");
    }
    const target = UserAgent.makeURI(`sip:${user}@${this.ua.configuration.uri.host}`);
    if (target === undefined) {
      throw new Error(`cannot call ${number}`);
    }
    await this.holdOthers(null);
    const inviter = new Inviter(this.ua, target, {
      sessionDescriptionHandlerOptions: { constraints: AUDIO_CONSTRAINTS },
    });
    const line = this.track(inviter, "outbound", number, number);
    inviter
      .invite({
        requestDelegate: {
          onProgress: (response) => {
            if (response.message.statusCode === 180 || response.message.statusCode === 183) {
              this.update(line, { state: "ringing" });
            }
          },
          onReject: (response) =>
            this.failed(line, response.message.statusCode ?? 0, response.message.reasonPhrase ?? ""),
        },
      })
      .catch((error: unknown) => this.update(line, { state: "ended", message: `Call failed: ${String(error)}` }));
  }

  private onInvite(invitation: Invitation): void {
    if (this.live().length >= MAX_LINES) {
      // Every line is taken: the gateway tries the agent's other phones or the ring group.
      invitation.reject({ statusCode: 486 }).catch(() => undefined);
      return;
    }
    const identity = invitation.remoteIdentity;
    const party = identity.displayName ? `${identity.displayName} <${identity.uri.user ?? ""}>` : (identity.uri.user ?? "");
    this.track(invitation, "inbound", party, identity.uri.user ?? "");
    invitation.progress().catch(() => undefined);
  }

  /** Answer the ringing line `id` (the newest ringing one if null), holding the one talking. */
  async accept(id: number | null = null): Promise<void> {
    const line = this.lineOf(id, (l) => l.view.state === "incoming", "no call is ringing");
    await this.holdOthers(line);
    line.accepting();
    await (line.session as Invitation)
      .accept({ sessionDescriptionHandlerOptions: { constraints: AUDIO_CONSTRAINTS } })
      .catch((error: unknown) => {
        // A caller who gave up while the other line was being held: the line already says so.
        if (line.view.state !== "ended") {
          this.update(line, { state: "ended", message: `Could not answer: ${String(error)}` });
        }
      });
  }

  /** Decline a ringing call with 486 Busy Here: a 6xx would stop the gateway ringing colleagues. */
  reject(id: number | null = null): void {
    const line = this.lineOf(id, (l) => l.view.state === "incoming", "no call is ringing");
    (line.session as Invitation).reject({ statusCode: 486 }).catch(() => undefined);
    this.update(line, { state: "ended", message: "Call declined" });
  }

  hangup(id: number | null = null): void {
    const line = this.lines.get(id ?? this.current() ?? -1);
    if (line === undefined) {
      return;
    }
    const session = line.session;
    if (session.state === SessionState.Established) {
      session.bye().catch(() => undefined);
    } else if (session instanceof Inviter) {
      session.cancel().catch(() => undefined);
    } else {
      (session as Invitation).reject({ statusCode: 486 }).catch(() => undefined);
    }
  }

  /**
   * Hold or resume a line (the current one if null). Resuming a line holds the one talking first:
   * the swap between two calls is "resume the other".
   */
  async setHold(hold: boolean, id: number | null = null): Promise<void> {
    const line = this.lineOf(id, (l) => l.session.state === SessionState.Established, "no call is up");
    if (!hold) {
      await this.holdOthers(line);
    }
    await this.reinvite(line, hold);
  }

  private async reinvite(line: Line, hold: boolean): Promise<void> {
    const session = line.session;
    session.sessionDescriptionHandlerOptionsReInvite = { hold } as Web.SessionDescriptionHandlerOptions;
    await new Promise<void>((resolve, reject) => {
      session
        .invite({
          requestDelegate: {
            onAccept: () => resolve(),
            onReject: (response) => reject(new Error(`${response.message.statusCode} ${response.message.reasonPhrase}`)),
          },
        })
        .catch(reject);
    });
    this.update(line, { state: hold ? "held" : "established" });
    if (!hold) {
      this.attachAudio(line.session);
    }
  }

  /** Hold every established, unheld line but `keep`: only one line is ever unheld. */
  private async holdOthers(keep: Line | null): Promise<void> {
    for (const other of this.live()) {
      if (other !== keep && other.view.state === "established") {
        await this.reinvite(other, true);
      }
    }
  }

  setMuted(muted: boolean, id: number | null = null): void {
    const line = this.lineOf(id, (l) => l.session.state === SessionState.Established, "no call is up");
    const handler = line.session.sessionDescriptionHandler as Web.SessionDescriptionHandler | undefined;
    handler?.enableSenderTracks(!muted);
    this.update(line, { muted });
  }

  /** One digit as SIP INFO (application/dtmf-relay), which the gateway plays as RFC 4733. */
  sendDigit(digit: string): void {
    if (!/^[0-9*#A-D]$/.test(digit)) {
      throw new Error(`not a DTMF digit: ${digit}`);
    }
    this.requireEstablished()
      .session.info({
        requestOptions: {
          body: {
            contentDisposition: "render",
            contentType: "application/dtmf-relay",
            content: `Signal=${digit}\r\nDuration=160`,
          },
        },
      })
      .catch((error: unknown) => this.events.log("warn", `DTMF ${digit} not sent: ${String(error)}`));
  }

  /**
   * Blind transfer (RFC 3515): REFER the other party to `target` (an extension or a number). The
   * gateway answers 202 and reports progress in NOTIFYs carrying a sipfrag (RFC 3420): a 2xx is
   * followed by its BYE, and a failure leaves the call with this phone.
   */
  transfer(target: string): void {
    const line = this.requireEstablished();
    const user = dialable(target);
    const uri = UserAgent.makeURI(`sip:${user}@${this.ua.configuration.uri.host}`);
    if (user === "" || uri === undefined) {
      throw new Error("type who to transfer to");
    }
    this.update(line, { transfer: `Transferring to ${target}…` });
    line.session
      .refer(uri, {
        requestDelegate: {
          onReject: (response) =>
            this.update(line, {
              transfer: `Transfer refused: ${response.message.statusCode ?? ""} ${response.message.reasonPhrase ?? ""}`,
            }),
        },
        onNotify: (notification) => {
          notification.accept().catch(() => undefined);
          const frag = /^SIP\/2\.0 (\d{3}) ?(.*)$/m.exec(notification.request.body ?? "");
          if (frag === null) {
            return;
          }
          const status = Number(frag[1]);
          if (status >= 200 && status < 300) {
            line.transferred = true;
            this.update(line, { transfer: `Transferred to ${target}` });
          } else if (status >= 300) {
            this.update(line, {
              transfer: `Transfer to ${target} failed: ${this.messageFor(status)} (${status} ${frag[2] ?? ""})`,
            });
          }
        },
      })
      .catch((error: unknown) => this.update(line, { transfer: `Transfer failed: ${String(error)}` }));
  }

  /** The line talking now (established and not held): DTMF and transfer act on it. */
  private requireEstablished(): Line {
    const line = this.live().find((l) => l.view.state === "established");
    if (line === undefined || line.session.state !== SessionState.Established) {
      throw new Error("no call is up");
    }
    return line;
  }

  private lineOf(id: number | null, fits: (line: Line) => boolean, otherwise: string): Line {
    const line = id !== null ? this.lines.get(id) : this.live().reverse().find(fits);
    if (line === undefined || !fits(line)) {
      throw new Error(otherwise);
    }
    return line;
  }

  private track(session: Session, direction: "outbound" | "inbound", party: string, number: string): Line {
    const view: CallView = {
      id: this.nextLine++,
      state: direction === "outbound" ? "calling" : "incoming",
      direction,
      party,
      number,
      answeredAt: null,
      muted: false,
      message: null,
      sipStatus: null,
      sipReason: null,
      transfer: null,
      setupMs: null,
    };
    let started = performance.now();
    const line: Line = {
      session,
      view,
      transferred: false,
      // An incoming call's set-up time is counted from the agent's Accept.
      accepting: () => {
        started = performance.now();
      },
    };
    // Lines over for a while make room: the page keeps showing how they ended until then.
    for (const [id, old] of this.lines) {
      if (old.view.state === "ended") {
        this.lines.delete(id);
      }
    }
    this.lines.set(view.id, line);
    this.events.call({ ...view });
    session.stateChange.addListener((state) => {
      if (state === SessionState.Established) {
        this.attachAudio(session);
        const setupMs = Math.round(performance.now() - started);
        this.events.log("log", `call established ${setupMs} ms after it was placed or accepted`);
        this.update(line, { state: "established", answeredAt: Date.now(), setupMs });
      } else if (state === SessionState.Terminated) {
        if (this.playing === session) {
          this.remoteAudio.srcObject = null;
          this.playing = null;
        }
        if (line.view.state !== "ended") {
          const message = line.transferred ? "Call transferred" : line.view.answeredAt ? "Call ended" : "Call canceled";
          this.update(line, { state: "ended", message });
        }
      }
    });
    return line;
  }

  private failed(line: Line, sipStatus: number, sipReason: string): void {
    this.update(line, { state: "ended", sipStatus, sipReason, message: this.messageFor(sipStatus) });
  }

  /** Play this session's audio: one <audio> element, the unheld line's. */
  private attachAudio(session: Session): void {
    const handler = session.sessionDescriptionHandler as Web.SessionDescriptionHandler | undefined;
    if (handler === undefined) {
      return;
    }
    this.playing = session;
    this.remoteAudio.srcObject = handler.remoteMediaStream;
    this.remoteAudio.play().catch((error: unknown) => this.events.log("warn", `audio: ${String(error)}`));
  }

  private update(line: Line, change: Partial<CallView>): void {
    line.view = { ...line.view, ...change };
    this.events.call({ ...line.view });
  }
}

/** One call of this phone and what the page shows of it. */
interface Line {
  session: Session;
  view: CallView;
  /** Whether the call was handed over by a transfer (its BYE then means "transferred"). */
  transferred: boolean;
  /** Restarts the incoming call's set-up clock when the agent accepts. */
  accepting: () => void;
}
