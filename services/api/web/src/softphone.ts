/**
 * The softphone page: the agent picks who they are, types their SIP password, and the page
 * registers over the gateway's WebSocket; then a dial pad with the E.164 preview as they type,
 * call, hang up, hold, mute, DTMF, and incoming calls to accept or reject. Failure messages come
 * from the api's /v1/sip-outcomes (shared/outcomes.py), the same words the call log shows.
 */

import { api, ApiError, byId, el, formatSeconds, withApiKey } from "./api";
import { type CallView, Phone, type ConnectionState, type RegistrationState } from "./phone";
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
let timer: number | null = null;
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

function renderCall(view: CallView | null): void {
  const state = view?.state ?? "idle";
  if (state === "incoming") {
    ringer.start();
    document.title = `Incoming call: ${view?.party ?? ""}`;
  } else {
    ringer.stop();
    document.title = TITLE;
  }
  const up = state === "established" || state === "held";
  const live = view !== null && state !== "ended";
  show("call-state", view === null ? "No call" : CALL_WORDS[view.state], state);
  byId("call-state").dataset.setupMs = view?.setupMs === null || view === null ? "" : String(view.setupMs);
  byId("call-party").textContent = view?.party ?? "";
  const message = byId("call-message");
  message.textContent = view?.message ?? "";
  message.dataset.failed = view?.sipStatus ? "yes" : "no";
  // The status behind the words, for whoever has to tell the carrier what happened.
  const sip = byId("call-sip");
  sip.textContent = view?.sipStatus ? `SIP ${view.sipStatus} ${view.sipReason ?? ""}` : "";
  sip.dataset.status = view?.sipStatus ? String(view.sipStatus) : "";
  byId<HTMLButtonElement>("call").disabled = live;
  byId<HTMLButtonElement>("hangup").disabled = !live || state === "incoming";
  byId<HTMLButtonElement>("accept").hidden = state !== "incoming";
  byId<HTMLButtonElement>("reject").hidden = state !== "incoming";
  byId<HTMLButtonElement>("hold").disabled = !up;
  byId<HTMLButtonElement>("hold").textContent = state === "held" ? "Resume" : "Hold";
  byId<HTMLButtonElement>("mute").disabled = !up;
  byId<HTMLButtonElement>("transfer").disabled = state !== "established";
  byId("transfer-state").textContent = view?.transfer ?? "";
  byId<HTMLButtonElement>("mute").textContent = view?.muted ? "Unmute" : "Mute";
  if (timer !== null && !up) {
    window.clearInterval(timer);
    timer = null;
  }
  const answeredAt = view?.answeredAt ?? null;
  if (up && timer === null && answeredAt !== null) {
    const tick = (): void => {
      byId("call-timer").textContent = formatSeconds((Date.now() - answeredAt) / 1000);
    };
    tick();
    timer = window.setInterval(tick, 500);
  }
  if (view === null) {
    byId("call-timer").textContent = "";
  }
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
      call: renderCall,
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
  byId("hangup").addEventListener("click", () => guard(() => phone?.hangup()));
  byId("accept").addEventListener("click", () => guard(() => phone?.accept()));
  byId("reject").addEventListener("click", () => guard(() => phone?.reject()));
  byId("hold").addEventListener("click", () =>
    guard(async () => phone?.setHold(byId("call-state").dataset.state !== "held")),
  );
  byId("transfer").addEventListener("click", () =>
    guard(() => phone?.transfer(byId<HTMLInputElement>("transfer-target").value)),
  );
  byId("mute").addEventListener("click", () => guard(() => phone?.setMuted(byId("mute").textContent === "Mute")));
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
  renderCall(null);
}

withApiKey(render).catch((error: unknown) => {
  byId("main").prepend(el("p", { class: "error" }, error instanceof Error ? error.message : String(error)));
});
