/**
 * The call log page: the list with filters and cursor paging (/v1/calls), and one call's detail
 * (/v1/calls/{id}): what happened, the quality of each leg as a chart, its recordings, and the
 * timeline of every event in the order it happened.
 */

import { api, ApiError, apiKey, byId, el, formatSeconds, formatTime, withApiKey } from "./api";
import { Backoff } from "./backoff";

interface Call {
  id: string;
  direction: string | null;
  from_number: string | null;
  to_number: string | null;
  agent_id: string | null;
  status: string;
  answered: boolean;
  started_at: string;
  answered_at: string | null;
  ended_at: string | null;
  duration_s: number | null;
  talk_time_s: number | null;
  end_cause: string | null;
  ended_by: string | null;
  sip_status: number | null;
  sip_reason: string | null;
  message: string | null;
  codec: string | null;
  recorded: boolean;
}

interface LegQuality {
  leg: string;
  codec: string;
  packets_received: number;
  packets_lost: number;
  loss_percent: number;
  jitter_ms: number;
  rtt_ms: number | null;
  mos: number | null;
}

interface Recording {
  id: string;
  status: string;
  format: string | null;
  duration_s: number | null;
  size_bytes: number | null;
  chunks_missing: number | null;
  paused_s: number | null;
  failure_reason: string | null;
  deletion_reason: string | null;
  compressed: { format: string } | null;
}

interface CallDetail extends Call {
  timeline: { id: string; type: string; occurred_at: string; sequence: number | null; data: Record<string, unknown> }[];
  quality: { final: boolean; legs: LegQuality[]; worst_mos: number | null };
  recordings: Recording[];
}

interface Page {
  items: Call[];
  next_cursor: string | null;
}

interface TextMessage {
  id: string;
  direction: string | null;
  text: string | null;
  status: string;
  reason: string | null;
}

/** One item of a customer's conversation (GET /v1/conversations/{number}). */
interface ConversationItem {
  kind: "call" | "message";
  at: string;
  call?: Call;
  recordings?: Recording[];
  message?: TextMessage;
}

/** The customer of a call: the caller of an inbound call, the number called of an outbound one. */
function customerOf(call: Call): string | null {
  const number = call.direction === "inbound" ? call.from_number : call.direction === "outbound" ? call.to_number : null;
  return number !== null && number.startsWith("+") ? number : null;
}

/** The customer's calls and messages, newest first, the shown call marked. */
async function conversation(call: Call): Promise<void> {
  const box = byId("customer");
  const number = customerOf(call);
  if (number === null) {
    box.hidden = true;
    return;
  }
  const page = await api<{ items: ConversationItem[] }>(`/v1/conversations/${encodeURIComponent(number)}?limit=20`);
  byId("customer-number").textContent = number;
  byId("conversation").replaceChildren(
    ...page.items.map((item) => {
      const at = new Date(item.at).toLocaleString();
      if (item.kind === "message" && item.message !== undefined) {
        const m = item.message;
        const who = m.direction === "inbound" ? "Customer wrote" : "Agent wrote";
        const how = m.status === "failed" ? `failed: ${m.reason ?? ""}` : m.status;
        return el(
          "li",
          { "data-kind": "message", "data-status": m.status },
          el("span", { class: "at" }, at),
          ` ${who}: `,
          el("q", { class: "text" }, m.text ?? ""),
          ` (${how})`,
        );
      }
      const c = item.call as Call;
      const talk = c.talk_time_s ? `, ${formatSeconds(c.talk_time_s)}` : "";
      const recorded = item.recordings && item.recordings.length > 0 ? ", recorded" : "";
      const link = el("a", { href: `/calls?call=${encodeURIComponent(c.id)}` }, `${c.direction ?? ""} call`);
      link.addEventListener("click", (event) => {
        event.preventDefault();
        void showCall(c.id);
      });
      return el(
        "li",
        { "data-kind": "call", "data-status": c.status, ...(c.id === call.id ? { "data-current": "" } : {}) },
        el("span", { class: "at" }, at),
        " ",
        link,
        `: ${c.status}${talk}${recorded}`,
      );
    }),
  );
  box.hidden = false;
}

let cursor: string | null = null;
/** Whether older pages were appended: a live refresh then leaves the list alone. */
let appended = false;
let shownCall: string | null = null;

function query(): URLSearchParams {
  const form = byId<HTMLFormElement>("filters");
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    const text = String(value).trim();
    if (text !== "") {
      // datetime-local has no zone: send it as the agent's local time in UTC.
      params.set(name, name === "since" || name === "until" ? new Date(text).toISOString() : text);
    }
  }
  params.set("limit", "50");
  return params;
}

async function load(append: boolean): Promise<void> {
  const params = query();
  if (append && cursor !== null) {
    params.set("cursor", cursor);
  }
  const error = byId("filters-error");
  let page: Page;
  try {
    page = await api<Page>(`/v1/calls?${params.toString()}`);
    error.textContent = "";
  } catch (failure: unknown) {
    error.textContent = failure instanceof ApiError ? failure.message : String(failure);
    return;
  }
  const body = byId<HTMLTableElement>("calls").tBodies[0];
  if (body === undefined) {
    return;
  }
  if (!append) {
    body.replaceChildren();
  }
  appended = append;
  for (const call of page.items) {
    const row = el(
      "tr",
      { class: "row", "data-call-id": call.id },
      el("td", {}, formatTime(call.started_at)),
      el("td", {}, call.direction ?? ""),
      el("td", {}, call.from_number ?? ""),
      el("td", {}, call.to_number ?? ""),
      el("td", { "data-state": call.answered ? "ok" : "" }, call.status),
      el("td", {}, formatSeconds(call.talk_time_s)),
      el("td", {}, call.message ?? ""),
    );
    row.addEventListener("click", () => {
      for (const other of body.querySelectorAll("tr.selected")) {
        other.classList.remove("selected");
      }
      row.classList.add("selected");
      showCall(call.id).catch((failure: unknown) => {
        byId("detail-facts").replaceChildren(el("p", { class: "error" }, String(failure)));
      });
    });
    body.append(row);
  }
  if (body.rows.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: "7", class: "hint" }, "No calls match.")));
  }
  cursor = page.next_cursor;
  byId("more").hidden = cursor === null;
}

function facts(call: CallDetail): HTMLElement[] {
  const pairs: [string, string][] = [
    ["Direction", call.direction ?? ""],
    ["From", call.from_number ?? ""],
    ["To", call.to_number ?? ""],
    ["Status", call.status],
    ["Started", formatTime(call.started_at)],
    ["Answered", formatTime(call.answered_at)],
    ["Ended", formatTime(call.ended_at)],
    ["Talk time", formatSeconds(call.talk_time_s)],
    ["Ended by", call.ended_by ?? ""],
    ["Why", [call.message, call.sip_status === null ? "" : `(SIP ${call.sip_status} ${call.sip_reason ?? ""})`].filter(Boolean).join(" ")],
    ["Codec", call.codec ?? ""],
  ];
  return pairs.filter(([, v]) => v !== "").flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]);
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag: string, attributes: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** One bar per leg and figure: MOS out of 4.5, loss out of 10 %, jitter out of 100 ms. */
function qualityChart(legs: LegQuality[]): Node {
  if (legs.length === 0) {
    return el("p", { class: "hint" }, "No quality report for this call.");
  }
  const figures: { name: string; value: (l: LegQuality) => number | null; full: number; unit: string; bad: (v: number) => boolean }[] = [
    { name: "MOS", value: (l) => l.mos, full: 4.5, unit: "", bad: (v) => v < 3.6 },
    { name: "loss", value: (l) => l.loss_percent, full: 10, unit: " %", bad: (v) => v > 2 },
    { name: "jitter", value: (l) => l.jitter_ms, full: 100, unit: " ms", bad: (v) => v > 30 },
  ];
  const rowHeight = 18;
  const height = legs.length * figures.length * rowHeight + legs.length * 8;
  const chart = svg("svg", { width: 520, height, role: "img", "aria-label": "Call quality per leg", id: "quality-chart" });
  let y = 0;
  for (const leg of legs) {
    for (const figure of figures) {
      const value = figure.value(leg);
      chart.append(svg("text", { x: 0, y: y + 13, "font-size": 12 }, `${leg.leg} ${figure.name}`));
      if (value !== null) {
        const width = Math.max(1, Math.min(1, value / figure.full) * 300);
        chart.append(svg("rect", { x: 140, y: y + 3, width, height: 12, class: figure.bad(value) ? "bar bad" : "bar" }));
        chart.append(svg("text", { x: 145 + width, y: y + 13, "font-size": 12 }, `${value.toFixed(figure.name === "MOS" ? 2 : 1)}${figure.unit}`));
      } else {
        chart.append(svg("text", { x: 140, y: y + 13, "font-size": 12 }, "n/a"));
      }
      y += rowHeight;
    }
    y += 8;
  }
  const table = el(
    "table",
    {},
    el("thead", {}, el("tr", {}, ...["Leg", "Codec", "Received", "Lost", "Jitter", "RTT", "MOS"].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      ...legs.map((l) =>
        el(
          "tr",
          {},
          ...[l.leg, l.codec, String(l.packets_received), `${l.packets_lost} (${l.loss_percent.toFixed(1)} %)`, `${l.jitter_ms.toFixed(1)} ms`, l.rtt_ms === null ? "" : `${l.rtt_ms.toFixed(0)} ms`, l.mos === null ? "" : l.mos.toFixed(2)].map((c) => el("td", {}, c)),
        ),
      ),
    ),
  );
  return el("div", {}, chart, table);
}

/**
 * A player for a finished recording: the api signs a short-lived link (/audio-url), which an
 * <audio> element can fetch without the API key, with HTTP Range for seeking.
 */
async function player(recording: Recording): Promise<Node> {
  const format = recording.compressed !== null ? "ogg" : "wav";
  const link = await api<{ path: string; expires_at: string }>(
    `/v1/recordings/${encodeURIComponent(recording.id)}/audio-url?format=${format}`,
  );
  const audio = el("audio", { controls: "", preload: "metadata", src: link.path, "data-recording-id": recording.id });
  const download = el("a", { href: link.path, download: `${recording.id}.${format}` }, `Download (${format})`);
  return el("div", { class: "player" }, audio, " ", download);
}

async function recordings(items: Recording[]): Promise<Node> {
  if (items.length === 0) {
    return el("p", { class: "hint" }, "Not recorded.");
  }
  const players = await Promise.all(
    items.map((r) =>
      r.status === "completed"
        ? player(r).catch((error: unknown) => el("p", { class: "error" }, `No audio: ${String(error)}`))
        : Promise.resolve(null),
    ),
  );
  return el(
    "ul",
    { class: "recordings" },
    ...items.map((r, index) => {
      const parts = [
        r.status,
        r.format ?? "",
        r.duration_s === null ? "" : formatSeconds(r.duration_s),
        r.size_bytes === null ? "" : `${(r.size_bytes / 1024).toFixed(0)} KiB`,
        r.chunks_missing ? `${r.chunks_missing} chunks missing` : "",
        r.paused_s ? `paused ${formatSeconds(r.paused_s)}` : "",
        r.failure_reason ?? "",
        r.deletion_reason ? `deleted: ${r.deletion_reason}` : "",
      ].filter(Boolean);
      const item = el("li", { "data-recording-id": r.id, "data-status": r.status }, `${r.id}: ${parts.join(", ")}`);
      const audio = players[index];
      if (audio !== null && audio !== undefined) {
        item.append(audio);
      }
      return item;
    }),
  );
}

async function showCall(id: string): Promise<void> {
  const call = await api<CallDetail>(`/v1/calls/${encodeURIComponent(id)}`);
  shownCall = call.id;
  byId("detail").hidden = false;
  byId("detail-id").textContent = call.id;
  byId("detail-facts").replaceChildren(...facts(call));
  byId("quality").replaceChildren(qualityChart(call.quality.legs));
  byId("recordings").replaceChildren(await recordings(call.recordings));
  const start = new Date(call.started_at).getTime();
  byId("timeline").replaceChildren(
    ...call.timeline.map((entry) => {
      const offset = (new Date(entry.occurred_at).getTime() - start) / 1000;
      const data = Object.entries(entry.data)
        .filter(([, v]) => v !== null && typeof v !== "object")
        .map(([k, v]) => `${k}=${typeof v === "number" && !Number.isInteger(v) ? Number(v.toFixed(3)) : String(v)}`)
        .join(" ");
      return el(
        "li",
        { "data-type": entry.type },
        el("span", { class: "at" }, `+${offset.toFixed(2)} s`),
        el("strong", {}, entry.type),
        " ",
        el("span", { class: "data" }, data),
      );
    }),
  );
  history.replaceState(null, "", `/calls?call=${encodeURIComponent(id)}`);
  await conversation(call);
}

/**
 * Keep the page current from the live event stream (/v1/events/live; a browser cannot set headers
 * on a WebSocket, so the key goes as ?api_key=): a call or recording event reloads the list's
 * first page and the shown call. The log is built from the same events by the api's consumer, a
 * moment later, so the reload waits a second and looks once more after a few. A dropped stream
 * resumes after the last event id it delivered.
 */
function follow(): void {
  const key = apiKey();
  if (key === null) {
    return;
  }
  const backoff = new Backoff();
  const live = byId("live-state");
  let since: string | null = null;
  const timers: number[] = [];
  const refresh = (callId: string | undefined): void => {
    for (const timer of timers.splice(0)) {
      window.clearTimeout(timer);
    }
    for (const delay of [1000, 4000]) {
      timers.push(
        window.setTimeout(() => {
          if (!appended) {
            void load(false);
          }
          if (shownCall !== null && (callId === undefined || callId === shownCall)) {
            void showCall(shownCall).catch(() => undefined);
          }
        }, delay),
      );
    }
  };
  const connect = (): void => {
    const url = new URL("/v1/events/live", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("api_key", key);
    url.searchParams.set("types", "call.*,recording.*");
    if (since !== null) {
      url.searchParams.set("since", since);
    }
    const socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      backoff.reset();
      live.textContent = "Live";
      live.dataset.state = "connected";
    });
    socket.addEventListener("message", (message: MessageEvent<string>) => {
      const event = JSON.parse(message.data) as { id?: string; call_id?: string; error?: string };
      if (event.error !== undefined) {
        live.textContent = `Not live: ${event.error}`;
        live.dataset.state = "error";
        return;
      }
      since = event.id ?? since;
      refresh(event.call_id);
    });
    socket.addEventListener("close", (closed: CloseEvent) => {
      if (closed.code === 4401 || closed.code === 4400) {
        return; // the key or a parameter is refused: retrying cannot help (the error is shown)
      }
      if (closed.code === 4404) {
        since = null; // the stream no longer holds our last event: start from now
      }
      const wait = backoff.next();
      live.textContent = `Not live, retrying in ${(wait / 1000).toFixed(0)} s`;
      live.dataset.state = "reconnecting";
      window.setTimeout(connect, wait);
    });
  };
  connect();
}

async function render(): Promise<void> {
  const agents = await api<{ id: string; extension: string; display_name: string | null }[]>("/v1/agents");
  const select = byId<HTMLFormElement>("filters").elements.namedItem("agent_id") as HTMLSelectElement;
  select.append(...agents.map((a) => el("option", { value: a.id }, `${a.extension}${a.display_name ? ` ${a.display_name}` : ""}`)));
  byId<HTMLFormElement>("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    void load(false);
  });
  byId("more").addEventListener("click", () => void load(true));
  await load(false);
  follow();
  const wanted = new URLSearchParams(location.search).get("call");
  if (wanted !== null) {
    await showCall(wanted);
  }
}

withApiKey(render).catch((error: unknown) => {
  byId("main").prepend(el("p", { class: "error" }, error instanceof Error ? error.message : String(error)));
});
