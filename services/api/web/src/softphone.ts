/**
 * The softphone page: the agent picks who they are, types their SIP password, and the page
 * registers over the gateway's WebSocket; then a dial pad with the E.164 preview as they type,
 * call, hang up, hold, mute, DTMF, and incoming calls to accept or reject; a second line while a
 * call is up (call waiting: one line talking, the other held), and pausing a call's recording.
 * Failure messages come from the api's /v1/sip-outcomes (shared/outcomes.py), the same words the
 * call log shows.
 */

import { api, ApiError, byId, el, formatSeconds, withApiKey } from "./api";
import { type CallView, type ConnectionState, MAX_LINES, Phone, type RegistrationState } from "./phone";
import { Ringer } from "./ringer";

interface Agent {
  id: string;
  extension: string;
  display_name: string | null;
  uri: string;
}

interface WebRtcConfig {
  ws_server: string;
  uri: string;
  authorization_username: string;
  display_name: string | null;
  ice_servers: { urls: string[]; username: string | null; credential: string | null }[];
}

interface SipOutcomes {
  statuses: { sip_status: number; message: string }[];
  classes: { sip_class: number; message: string }[];
}

interface Normalized {
  number: string;
  e164: string | null;
  valid: boolean;
  kind: string;
  region: string | null;
}

const DEBUG_STORAGE = "echodesk.debug";
const LAST_AGENT_STORAGE = "echodesk.agent";

let phone: Phone | null = null;
const ringer = new Ringer();
const TITLE = document.title;

/** shared/outcomes.py's lookup: the status's own message, else its class's. */
async function loadMessages(): Promise<(status: number) => string> {
  const table = await api<SipOutcomes>("/v1/sip-outcomes");
  const byStatus = new Map(table.statuses.map((o) => [o.sip_status, o.message]));
  const byClass = new Map(table.classes.map((o) => [o.sip_class, o.message]));
  return (status) => byStatus.get(status) ?? byClass.get(Math.floor(status / 100)) ?? "The call failed";
}

/** A stable +sip.instance per agent in this browser (RFC 5626 4.1): a reload is the same phone. */
function instanceId(agentId: string): string {
  const key = `echodesk.instance.${agentId}`;
  let id = localStorage.getItem(key);
  if (id === null) {
    id = crypto.randomUUID();
    localStorage.setItem(key, id);
  }
  return id;
}

function show(id: string, text: string, state: string): void {
  const node = byId<HTMLElement>(id);
  node.textContent = text;
  node.dataset.state = state;
}

function appendLog(level: string, text: string): void {
  const log = byId<HTMLElement>("log");
  log.append(`${new Date().toISOString().slice(11, 23)} ${level} ${text}\n`);
  while (log.childNodes.length > 500) {
    log.firstChild?.remove();
  }
  if (byId<HTMLInputElement>("debug").checked) {
    log.scrollTop = log.scrollHeight;
    console.debug(text);
  }
}

/** Every line the page knows of, by line id; a line over stays until the next call comes up. */
const lines = new Map<number, CallView>();
/** The line last changed: the main panel shows it when no line is up any more (how it ended). */
let lastLine: number | null = null;

function onCall(view: CallView): void {
  if (!lines.has(view.id)) {
    for (const [id, old] of lines) {
      if (old.state === "ended") {
        lines.delete(id);
      }
    }
  }
  lines.set(view.id, view);
  lastLine = view.id;
  renderLines();
}

/** The line the main panel and its buttons act on: the talking one, else the newest still up. */
function shown(): CallView | null {
  const id = phone?.current() ?? lastLine;
  return id === null ? null : (lines.get(id) ?? null);
}

function tickTimers(): void {
  for (const view of lines.values()) {
    const text = view.answeredAt !== null && view.state !== "ended" ? formatSeconds((Date.now() - view.answeredAt) / 1000) : "";
    const node = document.querySelector<HTMLElement>(`#lines li[data-line="${view.id}"] .timer`);
    if (node !== null) {
      node.textContent = text;
    }
    if (view.id === shown()?.id) {
      byId("call-timer").textContent = text;
    }
  }
  if (shown() === null) {
    byId("call-timer").textContent = "";
  }
}

/** The agent this page registered as (the api's agent id). */
let signedInAgent: string | null = null;
/** Lines whose recording the agent paused. */
const paused = new Set<number>();
/** The api's call id of each line, once looked up. */
const callIds = new Map<number, string>();

interface CallRow {
  id: string;
  agent_id: string | null;
}

/**
 * The api's id of a line's call. SIP does not carry it to the browser, so the call log is asked
 * for the call in progress with this line's number, answered around when the line was; among
 * several (a colleague talks to the same customer), the one of this agent.
 */
async function callIdOf(view: CallView): Promise<string> {
  const known = callIds.get(view.id);
  if (known !== undefined) {
    return known;
  }
  const since = new Date((view.answeredAt ?? Date.now()) - 300_000).toISOString();
  const query = `/v1/calls?status=in-progress&number=${encodeURIComponent(view.number)}&since=${encodeURIComponent(since)}`;
  // The call log is written from the call's events a moment after they happen.
  for (let attempt = 0; attempt < 5; attempt++) {
    const page = await api<{ items: CallRow[] }>(query);
    const mine = page.items.length === 1 ? page.items : page.items.filter((c) => c.agent_id === signedInAgent);
    const found = mine.length === 1 ? mine[0] : undefined;
    if (found !== undefined) {
      callIds.set(view.id, found.id);
      return found.id;
    }
    await new Promise((resolve) => window.setTimeout(resolve, 600));
  }
  throw new Error("this call is not in the call log yet: try again in a moment");
}

/** Pause or resume the recording of a talking line (POST /v1/calls/{id}/recording). */
async function toggleRecording(button: HTMLButtonElement, view: CallView | null): Promise<void> {
  if (view === null) {
    return;
  }
  const action = paused.has(view.id) ? "resume" : "pause";
  button.disabled = true;
  try {
    const id = await callIdOf(view);
    await api(`/v1/calls/${encodeURIComponent(id)}/recording`, { method: "POST", body: { action } });
    if (action === "pause") {
      paused.add(view.id);
    } else {
      paused.delete(view.id);
    }
  } finally {
    button.disabled = false;
    // The list and this button only: the main panel would write over an error shown under the call.
    renderLineList();
    renderRecordingButton(shown());
  }
}

/** The main panel's recording button: for the line shown, while it talks. */
function renderRecordingButton(view: CallView | null): void {
  const button = byId<HTMLButtonElement>("recording");
  button.disabled = view?.state !== "established";
  button.textContent = view !== null && paused.has(view.id) ? "Resume recording" : "Pause recording";
}

/** Each line with its number, party, state and timer, and what can be done with it. */
function renderLineList(): void {
  const list = byId<HTMLElement>("lines");
  // One call is the main panel alone; with a second, every line is listed with its own buttons.
  list.hidden = lines.size < 2;
  list.replaceChildren(
    ...[...lines.values()].map((view, slot) => {
      const button = (action: string, words: string, cls = ""): HTMLElement =>
        el("button", { type: "button", "data-action": action, ...(cls ? { class: cls } : {}) }, words);
      const actions: HTMLElement[] = [];
      if (view.state === "incoming") {
        actions.push(button("accept", "Answer", "go"), button("reject", "Reject", "stop"));
      } else if (view.state !== "ended") {
        if (view.state === "held") {
          actions.push(button("resume", "Resume"));
        } else if (view.state === "established") {
          actions.push(button("hold", "Hold"));
        }
        if (view.state === "established") {
          actions.push(button("recording", paused.has(view.id) ? "Resume recording" : "Pause recording"));
        }
        actions.push(button("hangup", "Hang up", "stop"));
      }
      return el(
        "li",
        { "data-line": String(view.id), "data-state": view.state },
        el("span", { class: "line-id" }, `Line ${slot + 1}`),
        " ",
        el("span", { class: "party" }, view.party),
        " ",
        el("span", { class: "state" }, view.state === "ended" ? (view.message ?? CALL_WORDS.ended) : CALL_WORDS[view.state]),
        " ",
        el("span", { class: "timer" }),
        " ",
        ...actions,
      );
    }),
  );
}

function renderLines(): void {
  const anyRinging = [...lines.values()].find((v) => v.state === "incoming");
  if (anyRinging !== undefined) {
    ringer.start([...lines.values()].some((v) => v.state === "established" || v.state === "held"));
    document.title = `Incoming call: ${anyRinging.party}`;
  } else {
    ringer.stop();
    document.title = TITLE;
  }
  renderLineList();
  renderCall(shown(), anyRinging !== undefined);
  tickTimers();
}

function renderCall(view: CallView | null, ringing: boolean): void {
  const state = view?.state ?? "idle";
  const up = state === "established" || state === "held";
  const live = [...lines.values()].filter((v) => v.state !== "ended").length;
  show("call-state", view === null ? "No call" : CALL_WORDS[view.state], state);
  const call = byId("call-state");
  call.dataset.setupMs = view?.setupMs === null || view === null ? "" : String(view.setupMs);
  call.dataset.line = view === null ? "" : String(view.id);
  byId("call-party").textContent = view?.party ?? "";
  const message = byId("call-message");
  message.textContent = view?.message ?? "";
  message.dataset.failed = view?.sipStatus ? "yes" : "no";
  // The status behind the words, for whoever has to tell the carrier what happened.
  const sip = byId("call-sip");
  sip.textContent = view?.sipStatus ? `SIP ${view.sipStatus} ${view.sipReason ?? ""}` : "";
  sip.dataset.status = view?.sipStatus ? String(view.sipStatus) : "";
  // A second call may be placed while one is up (the first is held): up to MAX_LINES.
  byId<HTMLButtonElement>("call").disabled = live >= MAX_LINES || state === "calling" || state === "ringing";
  byId<HTMLButtonElement>("hangup").disabled = view === null || state === "ended" || state === "incoming";
  byId<HTMLButtonElement>("accept").hidden = !ringing;
  byId<HTMLButtonElement>("reject").hidden = !ringing;
  byId<HTMLButtonElement>("hold").disabled = !up;
  byId<HTMLButtonElement>("hold").textContent = state === "held" ? "Resume" : "Hold";
  byId<HTMLButtonElement>("mute").disabled = !up;
  byId<HTMLButtonElement>("transfer").disabled = state !== "established";
  byId("transfer-state").textContent = view?.transfer ?? "";
  byId<HTMLButtonElement>("mute").textContent = view?.muted ? "Unmute" : "Mute";
  renderRecordingButton(view);
}

const CALL_WORDS: Record<CallView["state"], string> = {
  calling: "Calling…",
  ringing: "Ringing…",
  incoming: "Incoming call",
  established: "In call",
  held: "On hold",
  ended: "Call ended",
};
const CONNECTION_WORDS: Record<ConnectionState, string> = {
  connecting: "Connecting",
  connected: "Connected",
  reconnecting: "Connection lost, reconnecting",
  disconnected: "Disconnected",
};
const REGISTRATION_WORDS: Record<RegistrationState, string> = {
  unregistered: "Not registered",
  registering: "Registering…",
  registered: "Registered",
  failed: "Registration failed",
};

/** The E.164 preview, from the dial plan's own normalization (/v1/numbers/normalize). */
function previewAsTyped(): void {
  const input = byId<HTMLInputElement>("number");
  const preview = byId<HTMLElement>("preview");
  let pending = 0;
  input.addEventListener("input", () => {
    const typed = input.value.trim();
    const mine = ++pending;
    if (typed === "") {
      preview.textContent = "";
      return;
    }
    window.setTimeout(() => {
      if (mine !== pending) {
        return;
      }
      api<Normalized>(`/v1/numbers/normalize?number=${encodeURIComponent(typed)}`)
        .then((n) => {
          if (mine !== pending) {
            return;
          }
          const where = n.region ? `, ${n.region}` : "";
          preview.textContent = n.e164 !== null
            ? `${n.e164} (${n.kind.replace(/_/g, " ")}${where}${n.valid ? "" : ", not a valid number"})`
            : `${n.number} (${n.kind.replace(/_/g, " ")})`;
          preview.dataset.state = n.valid || n.e164 === null ? "ok" : "warning";
        })
        .catch((error: unknown) => {
          if (mine === pending) {
            preview.textContent = error instanceof ApiError ? (error.fields[0]?.message ?? error.message) : String(error);
            preview.dataset.state = "error";
          }
        });
    }, 150);
  });
}

function guard(action: () => void | Promise<void>): void {
  const message = byId("call-message");
  try {
    Promise.resolve(action()).catch((error: unknown) => {
      message.textContent = error instanceof Error ? error.message : String(error);
    });
  } catch (error: unknown) {
    message.textContent = error instanceof Error ? error.message : String(error);
  }
}

function inCall(): boolean {
  const state = byId("call-state").dataset.state;
  return phone !== null && (state === "established" || state === "held");
}

function sendDigit(digit: string): void {
  guard(() => phone?.sendDigit(digit));
  byId("dtmf-sent").textContent += digit;
}

function dialPad(): void {
  const pad = byId("dial-pad");
  for (const digit of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"]) {
    const key = el("button", { type: "button", class: "key", "data-digit": digit }, digit);
    key.addEventListener("click", () => {
      if (inCall()) {
        sendDigit(digit);
      } else {
        const input = byId<HTMLInputElement>("number");
        input.value += digit;
        input.dispatchEvent(new Event("input"));
      }
    });
    pad.append(key);
  }
  // During a call the keyboard's digits are DTMF too (an IVR asks while the agent looks elsewhere),
  // except while typing into a field.
  document.addEventListener("keydown", (event) => {
    const target = event.target as HTMLElement | null;
    if (inCall() && /^[0-9*#]$/.test(event.key) && !(target instanceof HTMLInputElement)) {
      sendDigit(event.key);
    }
  });
}

/** One line of the chat pane: who (and which way), the text, and how it went. */
function chatLine(direction: "in" | "out", party: string, text: string, state: string): HTMLElement {
  const line = el(
    "li",
    { "data-direction": direction, "data-state": state },
    el("span", { class: "party" }, direction === "in" ? `${party}:` : `to ${party}:`),
    " ",
    el("span", { class: "text" }, text),
    " ",
    el("span", { class: "state" }, state),
  );
  const log = byId<HTMLElement>("chat-log");
  log.append(line);
  line.scrollIntoView({ block: "nearest" });
  return line;
}

async function sendChat(messageFor: (status: number) => string): Promise<void> {
  const to = byId<HTMLInputElement>("chat-to").value.trim();
  const input = byId<HTMLInputElement>("chat-text");
  const text = input.value;
  if (phone === null || to === "" || text === "") {
    return;
  }
  const line = chatLine("out", to, text, "sending");
  input.value = "";
  const setState = (state: string, words: string): void => {
    line.dataset.state = state;
    (line.querySelector(".state") as HTMLElement).textContent = words;
  };
  try {
    const answer = await phone.sendMessage(to, text);
    if (answer.status === 200) {
      setState("delivered", "delivered");
    } else if (answer.status === 202) {
      setState("pending", `waiting: ${answer.reason}`);
    } else {
      setState("failed", `not sent: ${answer.reason || messageFor(answer.status)} (${answer.status})`);
    }
  } catch (error: unknown) {
    setState("failed", `not sent: ${error instanceof Error ? error.message : String(error)}`);
  }
}

async function register(messageFor: (status: number) => string): Promise<void> {
  const agentId = byId<HTMLSelectElement>("agent").value;
  const config = await api<WebRtcConfig>(`/v1/agents/${encodeURIComponent(agentId)}/webrtc-config`);
  const server = byId<HTMLInputElement>("ws-server").value.trim() || config.ws_server;
  localStorage.setItem(LAST_AGENT_STORAGE, agentId);
  signedInAgent = agentId;
  // A new phone numbers its lines from 1 again: forget the last one's.
  lines.clear();
  paused.clear();
  callIds.clear();
  lastLine = null;
  const created = new Phone(
    {
      server,
      uri: config.uri,
      authorizationUsername: config.authorization_username,
      password: byId<HTMLInputElement>("sip-password").value,
      displayName: config.display_name,
      iceServers: config.ice_servers.map((s) => ({
        urls: s.urls,
        ...(s.username !== null ? { username: s.username } : {}),
        ...(s.credential !== null ? { credential: s.credential } : {}),
      })),
      instanceId: instanceId(agentId),
    },
    {
      connection: (state, detail) => show("connection-state", `${CONNECTION_WORDS[state]}${detail ? ` (${detail})` : ""}`, state),
      registration: (state, detail) => show("registration-state", `${REGISTRATION_WORDS[state]}${detail ? `: ${detail}` : ""}`, state),
      call: onCall,
      log: appendLog,
      message: (from, displayName, text) => {
        chatLine("in", displayName && displayName !== from ? `${displayName} (${from})` : from, text, "received");
        const to = byId<HTMLInputElement>("chat-to");
        if (to.value === "") {
          to.value = from; // a reply goes back to whoever wrote
        }
      },
    },
    messageFor,
    byId<HTMLAudioElement>("remote-audio"),
  );
  created.debug = byId<HTMLInputElement>("debug").checked;
  phone = created;
  byId("setup").hidden = true;
  byId("phone").hidden = false;
  byId("whoami").textContent = `${config.display_name ?? ""} ${config.uri}`.trim();
  created.start();
}

async function render(): Promise<void> {
  const messageFor = await loadMessages();
  const agents = await api<Agent[]>("/v1/agents");
  const select = byId<HTMLSelectElement>("agent");
  select.replaceChildren(
    ...agents.map((a) => el("option", { value: a.id }, `${a.extension}${a.display_name ? ` (${a.display_name})` : ""}: ${a.uri}`)),
  );
  const last = localStorage.getItem(LAST_AGENT_STORAGE);
  if (last !== null && agents.some((a) => a.id === last)) {
    select.value = last;
  }
  const debug = byId<HTMLInputElement>("debug");
  debug.checked = localStorage.getItem(DEBUG_STORAGE) === "on";
  byId("log").hidden = !debug.checked;
  debug.addEventListener("change", () => {
    localStorage.setItem(DEBUG_STORAGE, debug.checked ? "on" : "off");
    byId("log").hidden = !debug.checked;
    if (phone !== null) {
      phone.debug = debug.checked;
    }
  });
  byId<HTMLFormElement>("setup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    ringer.unlock();
    register(messageFor).catch((error: unknown) => {
      byId("setup-error").textContent = error instanceof Error ? error.message : String(error);
    });
  });
  previewAsTyped();
  dialPad();
  byId<HTMLFormElement>("dial-form").addEventListener("submit", (event) => {
    event.preventDefault();
    byId("dtmf-sent").textContent = "";
    guard(() => phone?.call(byId<HTMLInputElement>("number").value));
  });
  byId("hangup").addEventListener("click", () => guard(() => phone?.hangup(shown()?.id ?? null)));
  byId("accept").addEventListener("click", () => guard(() => phone?.accept()));
  byId("reject").addEventListener("click", () => guard(() => phone?.reject()));
  byId("hold").addEventListener("click", () =>
    guard(async () => phone?.setHold(shown()?.state !== "held", shown()?.id ?? null)),
  );
  byId("lines").addEventListener("click", (event) => {
    const button = (event.target as HTMLElement).closest<HTMLButtonElement>("button[data-action]");
    const id = Number(button?.closest<HTMLElement>("li[data-line]")?.dataset.line);
    if (button === null || phone === null || !Number.isInteger(id)) {
      return;
    }
    const p = phone;
    const actions: Record<string, () => void | Promise<void>> = {
      accept: () => p.accept(id),
      reject: () => p.reject(id),
      hold: () => p.setHold(true, id),
      resume: () => p.setHold(false, id),
      hangup: () => p.hangup(id),
      recording: () => toggleRecording(button, lines.get(id) ?? null),
    };
    const action = actions[button.dataset.action ?? ""];
    if (action !== undefined) {
      guard(action);
    }
  });
  byId("recording").addEventListener("click", () =>
    guard(() => toggleRecording(byId<HTMLButtonElement>("recording"), shown())),
  );
  window.setInterval(tickTimers, 500);
  byId("transfer").addEventListener("click", () =>
    guard(() => phone?.transfer(byId<HTMLInputElement>("transfer-target").value)),
  );
  byId("mute").addEventListener("click", () =>
    guard(() => phone?.setMuted(byId("mute").textContent === "Mute", shown()?.id ?? null)),
  );
  byId<HTMLFormElement>("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    void sendChat(messageFor);
  });
  byId("unregister").addEventListener("click", () =>
    guard(async () => {
      await phone?.stop();
      phone = null;
      byId("phone").hidden = true;
      byId("setup").hidden = false;
    }),
  );
  renderLines();
}

withApiKey(render).catch((error: unknown) => {
  byId("main").prepend(el("p", { class: "error" }, error instanceof Error ? error.message : String(error)));
});
