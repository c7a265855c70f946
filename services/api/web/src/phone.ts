/**
 * The softphone's SIP side: one SIP.js 0.21 UserAgent over the gateway's WebSocket, its
 * registration, and at most one call. What the old product did in the browser is kept here:
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
  state: CallState;
  direction: "outbound" | "inbound";
  party: string;
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
  call(view: CallView | null): void;
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
  private session: Session | null = null;
  private view: CallView | null = null;
  /** Whether the current call was handed over by a transfer (its BYE then means "transferred"). */
  private transferred = false;
  /** Restarts the incoming call's set-up clock when the agent accepts. */
  private accepting: () => void = () => undefined;
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

  /** Call `number` (digits as typed: a phone number, an extension or a service code like *43). */
  call(number: string): void {
    if (this.busy()) {
      throw new Error("a call is already up");
    }
    const user = dialable(number);
    if (user === "") {
      throw new Error("type a number first");
    }
    const target = UserAgent.makeURI(`sip:${user}@${this.ua.configuration.uri.host}`);
    if (target === undefined) {
      throw new Error(`cannot call ${number}`);
    }
    const inviter = new Inviter(this.ua, target, {
      sessionDescriptionHandlerOptions: { constraints: AUDIO_CONSTRAINTS },
    });
    this.track(inviter, "outbound", number);
    inviter
      .invite({
        requestDelegate: {
          onProgress: (response) => {
            if (response.message.statusCode === 180 || response.message.statusCode === 183) {
              this.update({ state: "ringing" });
            }
          },
          onReject: (response) => this.failed(response.message.statusCode ?? 0, response.message.reasonPhrase ?? ""),
        },
      })
      .catch((error: unknown) => this.update({ state: "ended", message: `Call failed: ${String(error)}` }));
  }

  private onInvite(invitation: Invitation): void {
    if (this.busy()) {
      // One call at a time: the gateway tries the agent's other phones or the ring group.
      invitation.reject({ statusCode: 486 }).catch(() => undefined);
      return;
    }
    const identity = invitation.remoteIdentity;
    const party = identity.displayName ? `${identity.displayName} <${identity.uri.user ?? ""}>` : (identity.uri.user ?? "");
    this.track(invitation, "inbound", party);
    this.update({ state: "incoming" });
    invitation.progress().catch(() => undefined);
  }

  accept(): void {
    const session = this.session;
    if (session === null || this.view?.state !== "incoming") {
      throw new Error("no call is ringing");
    }
    this.accepting();
    (session as Invitation)
      .accept({ sessionDescriptionHandlerOptions: { constraints: AUDIO_CONSTRAINTS } })
      .catch((error: unknown) => this.update({ state: "ended", message: `Could not answer: ${String(error)}` }));
  }

  /** Decline a ringing call with 486 Busy Here: a 6xx would stop the gateway ringing colleagues. */
  reject(): void {
    const session = this.session;
    if (session === null || this.view?.state !== "incoming") {
      throw new Error("no call is ringing");
    }
    (session as Invitation).reject({ statusCode: 486 }).catch(() => undefined);
    this.update({ state: "ended", message: "Call declined" });
  }

  hangup(): void {
    const session = this.session;
    if (session === null) {
      return;
    }
    if (session.state === SessionState.Established) {
      session.bye().catch(() => undefined);
    } else if (session instanceof Inviter) {
      session.cancel().catch(() => undefined);
    } else {
      (session as Invitation).reject({ statusCode: 486 }).catch(() => undefined);
    }
  }

  /** Hold (a sendonly re-INVITE, RFC 3264 8.4) or resume the established call. */
  async setHold(hold: boolean): Promise<void> {
    const session = this.requireEstablished();
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
    this.update({ state: hold ? "held" : "established" });
  }

  setMuted(muted: boolean): void {
    const handler = this.requireEstablished().sessionDescriptionHandler as Web.SessionDescriptionHandler | undefined;
    handler?.enableSenderTracks(!muted);
    this.update({ muted });
  }

  /** One digit as SIP INFO (application/dtmf-relay), which the gateway plays as RFC 4733. */
  sendDigit(digit: string): void {
    if (!/^[0-9*#A-D]$/.test(digit)) {
      throw new Error(`not a DTMF digit: ${digit}`);
    }
    this.requireEstablished()
      .info({
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
    const session = this.requireEstablished();
    const user = dialable(target);
    const uri = UserAgent.makeURI(`sip:${user}@${this.ua.configuration.uri.host}`);
    if (user === "" || uri === undefined) {
      throw new Error("type who to transfer to");
    }
    this.update({ transfer: `Transferring to ${target}…` });
    session
      .refer(uri, {
        requestDelegate: {
          onReject: (response) =>
            this.update({
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
            this.transferred = true;
            this.update({ transfer: `Transferred to ${target}` });
          } else if (status >= 300) {
            this.update({ transfer: `Transfer to ${target} failed: ${this.messageFor(status)} (${status} ${frag[2] ?? ""})` });
          }
        },
      })
      .catch((error: unknown) => this.update({ transfer: `Transfer failed: ${String(error)}` }));
  }

  private requireEstablished(): Session {
    const session = this.session;
    if (session === null || session.state !== SessionState.Established) {
      throw new Error("no call is up");
    }
    return session;
  }

  private busy(): boolean {
    return this.session !== null && this.session.state !== SessionState.Terminated;
  }

  private track(session: Session, direction: "outbound" | "inbound", party: string): void {
    this.session = session;
    this.transferred = false;
    this.view = {
      state: direction === "outbound" ? "calling" : "incoming",
      direction,
      party,
      answeredAt: null,
      muted: false,
      message: null,
      sipStatus: null,
      sipReason: null,
      transfer: null,
      setupMs: null,
    };
    this.events.call({ ...this.view });
    let started = performance.now();
    if (direction === "inbound") {
      // An incoming call's set-up time is counted from the agent's Accept.
      this.accepting = () => {
        started = performance.now();
      };
    }
    session.stateChange.addListener((state) => {
      if (this.session !== session) {
        return;
      }
      if (state === SessionState.Established) {
        this.attachAudio(session);
        const setupMs = Math.round(performance.now() - started);
        this.events.log("log", `call established ${setupMs} ms after it was placed or accepted`);
        this.update({ state: "established", answeredAt: Date.now(), setupMs });
      } else if (state === SessionState.Terminated) {
        this.remoteAudio.srcObject = null;
        if (this.view?.state !== "ended") {
          const message = this.transferred ? "Call transferred" : this.view?.answeredAt ? "Call ended" : "Call canceled";
          this.update({ state: "ended", message });
        }
      }
    });
  }

  private failed(sipStatus: number, sipReason: string): void {
    this.update({ state: "ended", sipStatus, sipReason, message: this.messageFor(sipStatus) });
  }

  private attachAudio(session: Session): void {
    const handler = session.sessionDescriptionHandler as Web.SessionDescriptionHandler | undefined;
    if (handler === undefined) {
      return;
    }
    this.remoteAudio.srcObject = handler.remoteMediaStream;
    this.remoteAudio.play().catch((error: unknown) => this.events.log("warn", `audio: ${String(error)}`));
  }

  private update(change: Partial<CallView>): void {
    if (this.view === null) {
      return;
    }
    this.view = { ...this.view, ...change };
    this.events.call({ ...this.view });
  }
}
