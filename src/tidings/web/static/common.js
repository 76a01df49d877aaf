// What every page of the web app shares: calling the JSON API with the session cookie and the
// CSRF header, building elements (always as text, never HTML) and formatting times.
"use strict";

const T = JSON.parse(document.getElementById("words").textContent);
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const LANG = document.documentElement.lang;
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(message, field, status) {
    super(message);
    this.field = field || null;
    this.status = status;
  }
}

// body: undefined (none), a string (sent as YAML, for sequence files) or a value (JSON).
async function api(method, path, body) {
  const text = typeof body === "string";
  const response = await fetch("/api/v1" + path, {
    method,
    credentials: "same-origin",
    headers: {
      "Content-Type": text ? "application/yaml" : "application/json",
      "X-CSRF-Token": CSRF,
    },
    body: body === undefined ? undefined : text ? body : JSON.stringify(body),
  });
  if (response.status === 401) {
    window.location.href = "/app/login";
    throw new ApiError("signed out", null, 401);
  }
  const type = response.headers.get("content-type") || "";
  const data = response.status === 204 ? null : type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(error.message || response.statusText, error.field, response.status);
  }
  return data;
}

// A file to the API as multipart form data (the browser sets the boundary).
async function upload(path, file) {
  const form = new FormData();
  form.append("file", file);
  const response = await fetch("/api/v1" + path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "X-CSRF-Token": CSRF },
    body: form,
  });
  const data = await response.json();
  if (!response.ok) {
    const error = data.error || {};
    throw new ApiError(error.message || response.statusText, error.field, response.status);
  }
  return data;
}

// A moment in the reader's language: date and time, or the time alone (a list's newest lines).
function when(iso, withDate = true) {
  if (!iso) return "";
  const options = withDate ? { dateStyle: "medium", timeStyle: "short" } : { hour: "2-digit", minute: "2-digit" };
  return new Intl.DateTimeFormat(LANG, options).format(new Date(iso));
}

function number(value) {
  return new Intl.NumberFormat(LANG).format(value || 0);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function button(label, onClick, className) {
  const node = element("button", className || "", label);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

// An API error shown where the user looks: the message, and the field it names.
function showError(target, error) {
  target.hidden = false;
  target.textContent = error.field ? `${error.field}: ${error.message}` : error.message;
}

function download(name, text, type) {
  const link = element("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
}

// A WhatsApp template's body text, and how many {{n}} placeholders it has (each is one
// parameter to give when sending it).
function bodyText(template) {
  const body = (template.components || []).find((c) => String(c.type).toUpperCase() === "BODY");
  return body ? body.text || "" : "";
}

function placeholderCount(body) {
  return new Set((body.match(/\{\{\s*(\d+)\s*\}\}/g) || []).map((p) => p.replace(/\D/g, ""))).size;
}
