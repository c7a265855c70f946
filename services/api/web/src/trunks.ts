/**
 * The trunk settings page: the tenant's trunks, a form to create or edit one (/v1/trunks; a 422
 * or 409 is shown next to the field it names), set-default, and "Test connection": the trunk's
 * live registration (or OPTIONS keep-alive) state as signaling reports it
 * (/v1/trunks/{id}/registration), followed until it settles.
 */

import { api, ApiError, byId, el, formatTime, withApiKey } from "./api";

interface Trunk {
  id: string;
  name: string;
  sip_server: string;
  sip_port: number | null;
  transport: string;
  is_default: boolean;
  is_active: boolean;
  registers: boolean;
  [field: string]: unknown;
}

interface Registration {
  trunk_id: string;
  state: "registering" | "registered" | "failed" | "unregistered" | "unknown";
  registrar: string | null;
  sip_status: number | null;
  reason: string | null;
  expires_s: number | null;
  retry_in_s: number | null;
  changed_at: string | null;
}

const TEXT = ["name", "sip_server", "websocket_path", "outbound_proxy", "username", "auth_username", "realm", "domain", "turn_server", "turn_username", "default_region"];
const NUMBERS = ["sip_port", "expires_s", "keepalive_s", "max_concurrent_calls"];
const LISTS = ["stun_servers", "dids", "allowed_prefixes"];
const CHOICES = ["transport", "turn_credential"];
const FLAGS = ["registers", "is_active", "is_default"];
const SECRETS = ["password", "turn_password"];
/** Fields the api requires a value for (the others may be cleared with null). */
const REQUIRED = new Set(["name", "sip_server", "username", "default_region"]);

let editing: Trunk | null = null;

function form(): HTMLFormElement {
  return byId<HTMLFormElement>("trunk-form");
}

function input(name: string): HTMLInputElement {
  return form().elements.namedItem(name) as HTMLInputElement;
}

function clearErrors(): void {
  for (const node of form().querySelectorAll(".field-error")) {
    node.remove();
  }
  for (const node of form().querySelectorAll("label.invalid")) {
    node.classList.remove("invalid");
  }
  byId("form-error").textContent = "";
  byId("form-saved").textContent = "";
}

/** Each error beside its field (`dids[1]` goes to the DIDs box); the rest under the form. */
function showErrors(error: ApiError): void {
  const unplaced: string[] = [];
  for (const { field, message } of error.fields) {
    const root = field.split(/[.[]/)[0] ?? field;
    const label = form().querySelector<HTMLElement>(`label[data-field="${CSS.escape(root)}"]`);
    if (label === null) {
      unplaced.push(`${field}: ${message}`);
      continue;
    }
    label.classList.add("invalid");
    label.append(el("span", { class: "field-error", "data-error-for": field }, field === root ? message : `${field}: ${message}`));
  }
  if (error.fields.length === 0 || unplaced.length > 0) {
    byId("form-error").textContent = unplaced.length > 0 ? unplaced.join("; ") : error.message;
  }
}

function body(creating: boolean): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const name of TEXT) {
    const value = input(name).value.trim();
    if (value !== "") {
      values[name] = value;
    } else if (!creating) {
      values[name] = REQUIRED.has(name) ? "" : null;
    }
  }
  for (const name of NUMBERS) {
    const value = input(name).value.trim();
    if (value !== "") {
      // Not a number goes as typed, so the api's 422 names the field and says why.
      values[name] = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
    } else if (!creating && name === "sip_port") {
      values[name] = null;
    }
  }
  for (const name of LISTS) {
    values[name] = input(name).value.split(/\n/).map((line) => line.trim()).filter((line) => line !== "");
  }
  for (const name of CHOICES) {
    values[name] = input(name).value;
  }
  for (const name of FLAGS) {
    values[name] = input(name).checked;
  }
  for (const name of SECRETS) {
    // Write-only: empty leaves the stored secret as it is.
    if (input(name).value !== "") {
      values[name] = input(name).value;
    }
  }
  if (creating && values.username === undefined) {
    values.username = "";
  }
  return values;
}

function fill(trunk: Trunk | null): void {
  editing = trunk;
  form().reset();
  clearErrors();
  byId("editor").hidden = false;
  byId("test-report").hidden = true;
  byId("editor-title").textContent = trunk === null ? "New trunk" : `Trunk ${trunk.name}`;
  byId<HTMLButtonElement>("test-trunk").disabled = trunk === null;
  if (trunk === null) {
    return;
  }
  for (const name of [...TEXT, ...NUMBERS, ...CHOICES]) {
    const value = trunk[name];
    input(name).value = value === null || value === undefined ? "" : String(value);
  }
  for (const name of LISTS) {
    input(name).value = ((trunk[name] as string[] | undefined) ?? []).join("\n");
  }
  for (const name of FLAGS) {
    input(name).checked = Boolean(trunk[name]);
  }
  input("password").placeholder = trunk.has_password ? "unchanged (one is stored)" : "none stored";
  input("turn_password").placeholder = trunk.has_turn_password ? "unchanged (one is stored)" : "none stored";
}

async function list(): Promise<void> {
  const trunks = await api<Trunk[]>("/v1/trunks");
  const body = byId<HTMLTableElement>("trunks").tBodies[0];
  if (trunks.length === 0) {
    body?.replaceChildren(el("tr", {}, el("td", { colspan: "6", class: "hint" }, "No trunk yet: calls can reach only agents and the test numbers.")));
    return;
  }
  body?.replaceChildren(
    ...trunks.map((trunk) => {
      const makeDefault = el("button", { type: "button" }, "Make default");
      makeDefault.hidden = trunk.is_default;
      makeDefault.addEventListener("click", (event) => {
        event.stopPropagation();
        api<Trunk>(`/v1/trunks/${trunk.id}/set-default`, { method: "POST" })
          .then(list)
          .catch((error: unknown) => {
            byId("form-error").textContent = String(error);
          });
      });
      const row = el(
        "tr",
        { class: "row", "data-trunk-id": trunk.id },
        el("td", {}, trunk.name),
        el("td", {}, `${trunk.sip_server}${trunk.sip_port === null ? "" : `:${trunk.sip_port}`}`),
        el("td", {}, trunk.transport),
        el("td", {}, trunk.is_default ? "default" : ""),
        el("td", {}, trunk.is_active ? "yes" : "no"),
        el("td", {}, makeDefault),
      );
      row.addEventListener("click", () => fill(trunk));
      return row;
    }),
  );
}

async function save(): Promise<void> {
  clearErrors();
  const creating = editing === null;
  try {
    const saved = creating
      ? await api<Trunk>("/v1/trunks", { method: "POST", body: body(true) })
      : await api<Trunk>(`/v1/trunks/${editing?.id ?? ""}`, { method: "PATCH", body: body(false) });
    fill(saved);
    byId("form-saved").textContent = `Saved ${formatTime(new Date().toISOString())}.`;
    await list();
  } catch (error: unknown) {
    if (error instanceof ApiError) {
      showErrors(error);
    } else {
      byId("form-error").textContent = String(error);
    }
  }
}

const STATE_WORDS: Record<Registration["state"], string> = {
  registered: "Registered with the carrier",
  registering: "Registering…",
  failed: "Failed",
  unregistered: "Not registered",
  unknown: "No report from signaling yet",
};
/** A trunk that does not register is "registered" once its carrier answers an OPTIONS. */
const OPTIONS_WORDS: Record<Registration["state"], string> = {
  ...STATE_WORDS,
  registered: "Reachable: the carrier answers OPTIONS",
  registering: "Checking…",
  failed: "Not reachable",
  unregistered: "Not checked (the trunk is inactive)",
};

function registers(trunk: Trunk): boolean {
  return trunk.registers && Boolean(trunk.username);
}

function report(trunk: Trunk, registration: Registration, settled: boolean): void {
  const probeOff = !registers(trunk) && Number(trunk.keepalive_s) === 0;
  const words = registers(trunk) ? STATE_WORDS : OPTIONS_WORDS;
  const rows: [string, string][] = [
    ["State", probeOff ? "Not checked: the trunk neither registers nor sends OPTIONS keep-alives" : words[registration.state]],
    ["Registrar", registration.registrar ?? ""],
    ["SIP status", registration.sip_status === null ? "" : String(registration.sip_status)],
    ["Reason", registration.reason ?? ""],
    ["Expires", registration.expires_s === null ? "" : `${registration.expires_s} s`],
    ["Retry in", registration.retry_in_s === null ? "" : `${registration.retry_in_s.toFixed(0)} s`],
    ["Reported", formatTime(registration.changed_at)],
  ];
  const mode = registers(trunk) ? "REGISTER with the trunk's credentials" : "OPTIONS keep-alive (the trunk does not register)";
  const box = byId("test-report");
  box.hidden = false;
  box.replaceChildren(
    el("h3", {}, `Connection test: ${trunk.name}`),
    el("p", { class: "hint" }, `How signaling checks this carrier: ${mode}.${settled ? "" : " Waiting for its report…"}`),
    el(
      "dl",
      {},
      ...rows.filter(([, v]) => v !== "").flatMap(([k, v]) => [
        el("dt", {}, k),
        el("dd", k === "State" ? { id: "registration-result", "data-state": registration.state } : {}, v),
      ]),
    ),
  );
}

/** Follow the trunk's state for up to 20 s, until it is registered or failed. */
async function test(): Promise<void> {
  const trunk = editing;
  if (trunk === null) {
    return;
  }
  const button = byId<HTMLButtonElement>("test-trunk");
  button.disabled = true;
  try {
    const deadline = Date.now() + 20000;
    for (;;) {
      const registration = await api<Registration>(`/v1/trunks/${trunk.id}/registration`);
      const settled = registration.state === "registered" || registration.state === "failed" || Date.now() > deadline;
      report(trunk, registration, settled);
      if (settled) {
        return;
      }
      await new Promise((resolve) => window.setTimeout(resolve, 500));
    }
  } finally {
    button.disabled = false;
  }
}

async function render(): Promise<void> {
  await list();
  byId("new-trunk").addEventListener("click", () => fill(null));
  byId("cancel-edit").addEventListener("click", () => {
    byId("editor").hidden = true;
  });
  form().addEventListener("submit", (event) => {
    event.preventDefault();
    void save();
  });
  byId("test-trunk").addEventListener("click", () => {
    test().catch((error: unknown) => {
      byId("form-error").textContent = String(error);
    });
  });
}

withApiKey(render).catch((error: unknown) => {
  byId("main").prepend(el("p", { class: "error" }, error instanceof Error ? error.message : String(error)));
});
