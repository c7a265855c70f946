/**
 * The api as the pages use it: the API key (typed once into the sign-in form, kept in
 * sessionStorage so it leaves with the tab), `Authorization: Bearer` on every request, and errors
 * in the api's shape: a 422 lists `{loc, msg, field}` per field, other 4xx carry `detail` in words.
 */

const KEY_STORAGE = "echodesk.apiKey";

export interface FieldError {
  /** The field as a person reads it: `sip_port`, `dids[2]`. */
  field: string;
  message: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly fields: FieldError[];

  constructor(status: number, message: string, fields: FieldError[]) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function signOut(): void {
  sessionStorage.removeItem(KEY_STORAGE);
  location.reload();
}

interface ValidationItem {
  loc?: (string | number)[];
  msg?: string;
  field?: string;
}

function errorOf(status: number, body: unknown): ApiError {
  const detail = (body as { detail?: unknown } | null)?.detail;
  if (Array.isArray(detail)) {
    const fields = (detail as ValidationItem[]).map((item) => ({
      field: item.field ?? (item.loc ?? []).slice(1).join("."),
      message: item.msg ?? "invalid",
    }));
    return new ApiError(status, fields.map((f) => `${f.field}: ${f.message}`).join("; "), fields);
  }
  const message = typeof detail === "string" ? detail : `HTTP ${status}`;
  // A 409 names the field that clashes (a trunk name in use) beside its words.
  const field = (body as { field?: unknown } | null)?.field;
  return new ApiError(status, message, typeof field === "string" ? [{ field, message }] : []);
}

/** A JSON request to the api; rejects with ApiError for any status but 2xx. */
export async function api<T>(path: string, init: { method?: string; body?: unknown; key?: string } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const key = init.key ?? apiKey();
  if (key !== null) {
    headers.Authorization = `Bearer ${key}`;
  }
  if (init.body !== undefined) {
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, {
    method: init.method ?? "GET",
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  const text = await response.text();
  const body: unknown = text === "" ? null : JSON.parse(text);
  if (!response.ok) {
    throw errorOf(response.status, body);
  }
  return body as T;
}

/** `document.createElement` with text, attributes and children in one expression. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

export function byId<T extends HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (node === null) {
    throw new Error(`the page has no #${id}`);
  }
  return node as T;
}

/**
 * Run a page once an API key is known: the sign-in form first when there is none (or when the
 * api refuses the stored one), then `render`. The key is checked against /v1/tenant.
 */
export async function withApiKey(render: () => Promise<void>): Promise<void> {
  const main = byId<HTMLElement>("main");
  const signOutButton = document.getElementById("sign-out");
  signOutButton?.addEventListener("click", signOut);
  const stored = apiKey();
  if (stored !== null) {
    try {
      await api<unknown>("/v1/tenant", { key: stored });
      await render();
      return;
    } catch (error: unknown) {
      if (!(error instanceof ApiError && error.status === 401)) {
        throw error;
      }
      sessionStorage.removeItem(KEY_STORAGE);
    }
  }
  const login = byId<HTMLTemplateElement>("sign-in").content.cloneNode(true) as DocumentFragment;
  // Hide the page until signed in, and afterwards show again only what was shown before.
  const hidden = (Array.from(main.children) as HTMLElement[]).filter((child) => !child.hidden);
  for (const child of hidden) {
    child.hidden = true;
  }
  main.prepend(login);
  const form = byId<HTMLFormElement>("sign-in-form");
  const input = byId<HTMLInputElement>("api-key");
  const error = byId<HTMLElement>("api-key-error");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    api<unknown>("/v1/tenant", { key })
      .then(async () => {
        sessionStorage.setItem(KEY_STORAGE, key);
        form.remove();
        for (const child of hidden) {
          child.hidden = false;
        }
        await render();
      })
      .catch((failure: unknown) => {
        error.textContent = failure instanceof Error ? failure.message : String(failure);
      });
  });
}

export function formatTime(iso: string | null): string {
  return iso === null ? "" : new Date(iso).toLocaleString();
}

export function formatSeconds(seconds: number | null): string {
  if (seconds === null) {
    return "";
  }
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}
