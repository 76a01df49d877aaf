// Broadcasts: create one from an approved template and an audience, with the estimate first
// (recipients, cost if all are delivered, the batch warning of P6); then its progress, its
// outcomes and why messages were skipped or deferred, refreshed while it runs and, once it has
// finished, while its messages still move (deliveries and reads come for hours after).
"use strict";

const ORDER = ["read", "delivered", "sent", "sending", "queued", "deferred", "skipped", "failed", "uncertain"];
const RUNNING = new Set(["scheduled", "planning", "sending"]);
// States a message leaves on its own later (a report from WhatsApp); the others are final.
const MOVING = ["queued", "sending", "accepted", "sent", "delivered"];
const RUNNING_EVERY_MS = 1500;
const SETTLING_EVERY_MS = 5000;
const SETTLING_FOR_MS = 15 * 60 * 1000; // then a reopen refreshes it
let current = null;
let polling = null;
let lastChange = { id: null, figures: "", at: 0 };

async function list() {
  const broadcasts = await api("GET", "/broadcasts");
  const target = $("broadcast-list");
  target.replaceChildren();
  if (!broadcasts.length) {
    target.append(element("li", "empty", T.no_broadcasts));
    return;
  }
  for (const broadcast of broadcasts.slice().reverse()) {
    const item = element("li", "conversation");
    item.dataset.id = broadcast.id;
    const head = element("span", "name", broadcast.name);
    head.append(" ", element("span", `badge status-${broadcast.status}`, T["bstatus_" + broadcast.status] || broadcast.status));
    item.append(head, element("span", "preview", `${T.recipients.replace("{n}", number(broadcast.recipients))} · ${when(broadcast.send_at)}`));
    item.setAttribute("aria-current", String(current !== null && current.id === broadcast.id));
    item.addEventListener("click", () => open(broadcast.id));
    target.append(item);
  }
}

function showPane(name) {
  $("pick").hidden = name !== "pick";
  $("creating").hidden = name !== "creating";
  $("detail").hidden = name !== "detail";
  $("broadcasts").dataset.view = name === "pick" ? "list" : "thread";
}

const STANDARD_FIELDS = ["first_name", "name", "last_name", "phone", "country"];
let confirming = null; // the request the estimate shown was made for, awaiting confirmation
let customFields = []; // the workspace's own contact fields, for template parameters

async function startCreating() {
  clearTimeout(polling);
  current = null;
  confirming = null;
  showPane("creating");
  $("estimate").hidden = true;
  $("form-error").hidden = true;
  $("send-button").textContent = T.create_broadcast;
  const [templates, fields, segments] = await Promise.all([
    api("GET", "/templates"),
    api("GET", "/custom-fields"),
    api("GET", "/segments"),
  ]);
  const select = $("template");
  select.replaceChildren();
  for (const template of templates.filter((t) => t.status === "approved" || t.status === "local")) {
    const option = element("option", "", `${template.name} · ${template.language} · ${template.category.toLowerCase()}`);
    option.value = JSON.stringify({ name: template.name, language: template.language, number_id: template.number_id, body: bodyText(template) });
    select.append(option);
  }
  customFields = fields;
  const segment = $("segment");
  segment.replaceChildren(element("option", "", T.anyone));
  segment.options[0].value = "";
  for (const found of segments) {
    const option = element("option", "", found.name);
    option.value = found.name;
    segment.append(option);
  }
  drawParameters();
  await list();
}

// One row per {{n}} of the template's body: a text of its own, or a field of the contact with
// the words to use when the contact has none.
function drawParameters() {
  const box = $("parameters");
  box.replaceChildren();
  const chosen = $("template").value ? JSON.parse($("template").value) : { body: "" };
  const count = placeholderCount(chosen.body);
  $("parameters-box").hidden = count === 0;
  $("template-body").textContent = chosen.body;
  for (let n = 1; n <= count; n += 1) {
    const row = element("div", "row parameter");
    row.dataset.n = n;
    const source = element("select");
    source.setAttribute("aria-label", T.param_source.replace("{n}", `{{${n}}}`));
    source.append(new Option(T.param_text, ""));
    for (const key of STANDARD_FIELDS) source.append(new Option(T["field_" + key], key));
    for (const field of customFields) source.append(new Option(field.label, field.key));
    const value = element("input");
    value.required = true;
    const label = () => {
      value.placeholder = source.value ? T.param_fallback : T.param_text;
      value.setAttribute("aria-label", `${T.param_source.replace("{n}", `{{${n}}}`)}: ${value.placeholder}`);
    };
    source.addEventListener("change", label);
    label();
    row.append(source, value);
    box.append(row);
  }
}

function parameters() {
  return [...$("parameters").querySelectorAll(".parameter")].map((row) => {
    const [source, value] = row.querySelectorAll("select, input");
    return source.value
      ? { type: "text", field: source.value, fallback: value.value.trim() }
      : { type: "text", text: value.value.trim() };
  });
}

function schedule() {
  const when = document.querySelector("input[name=when]:checked").value;
  if (when === "at" && $("send-at").value) return { send_at: new Date($("send-at").value).toISOString() };
  if (when === "local" && $("local-date").value && $("local-time").value) {
    return { local_date: $("local-date").value, local_time: $("local-time").value };
  }
  return {};
}

function request(dryRun) {
  const chosen = JSON.parse($("template").value || "{}");
  const template = { name: chosen.name, language: { code: chosen.language } };
  const values = parameters();
  if (values.length) template.components = [{ type: "body", parameters: values }];
  const audience = {};
  const tags = $("tags").value.split(",").map((tag) => tag.trim()).filter(Boolean);
  if (tags.length) audience.tags = tags;
  const conditions = [];
  if ($("segment").value) conditions.push({ in_segment: $("segment").value });
  const condition = $("condition").value.trim();
  if (condition) conditions.push(JSON.parse(condition));
  if (conditions.length) audience.condition = conditions.length === 1 ? conditions[0] : { all: conditions };
  return {
    name: $("name").value.trim() || "—",
    purpose: $("purpose").value,
    number_id: chosen.number_id,
    template,
    audience,
    ...schedule(),
    dry_run: dryRun,
  };
}

function drawForecast(forecast, recipients) {
  const target = $("estimate-forecast");
  target.replaceChildren();
  const line = (kind, text) => {
    const item = element("li", `forecast-${kind}`, text);
    item.dataset.kind = kind;
    target.append(item);
  };
  if (forecast.outcomes.queued) line("queued", T.forecast_queued.replace("{n}", number(forecast.outcomes.queued)));
  for (const [status, kind] of [["deferred", "forecast_deferred"], ["skipped", "forecast_skipped"]]) {
    for (const [reason, count] of Object.entries(forecast.reasons[status] || {})) {
      line(status, T[kind].replace("{n}", number(count)).replace("{reason}", reason));
    }
  }
  if (forecast.first_send_at) {
    line("window", T.forecast_window.replace("{first}", when(forecast.first_send_at)).replace("{last}", when(forecast.last_send_at)));
  }
  if (forecast.decided < recipients) line("sample", T.forecast_sample.replace("{n}", number(forecast.decided)));
}

function drawEstimate(estimate) {
  $("estimate").hidden = false;
  drawForecast(estimate.forecast, estimate.recipients);
  $("estimate-recipients").textContent = T.recipients.replace("{n}", number(estimate.recipients));
  const cost = new Intl.NumberFormat(LANG, { style: "currency", currency: estimate.currency }).format(estimate.expected_cost);
  $("estimate-cost").textContent = T.expected_cost.replace("{cost}", cost);
  const batches = $("estimate-batches");
  if (estimate.batches > 1) {
    batches.className = "warning";
    batches.textContent = T.batch_warning
      .replace("{limit}", number(estimate.daily_limit))
      .replace("{batches}", number(estimate.batches))
      .replace("{size}", number(estimate.batch_size))
      .replace("{hours}", number(Math.round(estimate.batch_every_seconds / 360) / 10));
  } else {
    batches.className = "muted";
    batches.textContent = T.one_batch.replace("{limit}", number(estimate.daily_limit));
  }
}

// The estimate first, always: sending asks for a confirmation of the very request estimated.
async function submit(dryRun) {
  $("form-error").hidden = true;
  let body;
  try {
    body = request(true);
  } catch {
    showError($("form-error"), { field: "condition", message: T.not_json });
    return;
  }
  const same = confirming !== null && confirming === JSON.stringify(body);
  try {
    if (dryRun || !same) {
      const estimated = await api("POST", "/broadcasts", body);
      drawEstimate(estimated.estimate);
      if (dryRun) return;
      confirming = JSON.stringify(body);
      $("confirm-note").hidden = false;
      $("send-button").textContent = T.confirm_send.replace("{n}", number(estimated.estimate.recipients));
      $("send-button").focus();
      return;
    }
    const created = await api("POST", "/broadcasts", { ...body, dry_run: false });
    confirming = null;
    if (created.broadcast) await open(created.broadcast.id);
  } catch (error) {
    showError($("form-error"), error);
  }
}

// Any change to the form asks for a new estimate before sending.
function unconfirm() {
  if (confirming === null) return;
  confirming = null;
  $("confirm-note").hidden = true;
  $("send-button").textContent = T.create_broadcast;
}

async function open(id) {
  clearTimeout(polling);
  let next = RUNNING_EVERY_MS;
  try {
    next = await draw(id);
  } finally {
    // A failed refresh (the network, a restart) tries again; it never ends the refreshing.
    if (next !== null && current !== null && current.id === id) {
      polling = setTimeout(() => open(id), next);
    }
  }
}

// Draws the broadcast; returns when to look again (null: nothing will change any more).
async function draw(id) {
  const [broadcast, statistics] = await Promise.all([
    api("GET", `/broadcasts/${id}`),
    api("GET", `/broadcasts/${id}/statistics`),
  ]);
  current = broadcast;
  showPane("detail");
  $("broadcast-name").textContent = broadcast.name;
  $("broadcast-status").textContent = T["bstatus_" + broadcast.status] || broadcast.status;
  $("broadcast-status").className = `badge status-${broadcast.status}`;
  $("broadcast-status").dataset.status = broadcast.status;
  $("cancel").hidden = !RUNNING.has(broadcast.status);
  $("broadcast-summary").textContent = `${T.recipients.replace("{n}", number(broadcast.recipients))} · ${broadcast.template.name} · ${when(broadcast.send_at)}`;
  drawOutcomes(statistics);
  await list();
  if (RUNNING.has(broadcast.status)) return RUNNING_EVERY_MS;
  const figures = JSON.stringify(statistics.outcomes);
  if (lastChange.id !== id || lastChange.figures !== figures) lastChange = { id, figures, at: Date.now() };
  const moving = MOVING.some((status) => statistics.outcomes[status]);
  return moving && Date.now() - lastChange.at < SETTLING_FOR_MS ? SETTLING_EVERY_MS : null;
}

function drawOutcomes(statistics) {
  const outcomes = statistics.outcomes;
  const total = Object.values(outcomes).reduce((sum, n) => sum + n, 0);
  const bar = $("bar");
  bar.replaceChildren();
  const figures = $("outcomes");
  figures.replaceChildren();
  for (const status of ORDER) {
    if (!outcomes[status]) continue;
    const part = element("span", status);
    part.style.width = `${(100 * outcomes[status]) / total}%`;
    part.title = `${T["status_" + status] || status} ${outcomes[status]}`;
    bar.append(part);
    const cell = element("div", "figure");
    cell.dataset.figure = status;
    cell.append(element("dt", "", T["status_" + status] || status), element("dd", "", number(outcomes[status])));
    figures.append(cell);
  }
  bar.setAttribute("aria-label", Object.entries(outcomes).map(([s, n]) => `${T["status_" + s] || s} ${n}`).join(", "));
  const body = $("reasons").querySelector("tbody");
  body.replaceChildren();
  for (const [status, reasons] of Object.entries(statistics.reasons)) {
    for (const [reason, count] of Object.entries(reasons)) {
      const line = element("tr");
      line.append(element("td", "", T["status_" + status] || status), element("td", "", reason), element("td", "", number(count)));
      body.append(line);
    }
  }
  if (!body.children.length) {
    const line = element("tr");
    line.append(element("td", "muted", T.nothing_yet));
    body.append(line);
  }
}

async function cancel() {
  await api("POST", `/broadcasts/${current.id}/cancel`);
  await open(current.id);
}

function start() {
  $("new-broadcast").addEventListener("click", startCreating);
  $("estimate-button").addEventListener("click", () => submit(true));
  $("broadcast-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit(false);
  });
  $("cancel").addEventListener("click", cancel);
  $("template").addEventListener("change", drawParameters);
  $("broadcast-form").addEventListener("input", unconfirm);
  $("broadcast-form").addEventListener("change", unconfirm);
  for (const choice of document.querySelectorAll("input[name=when]")) {
    choice.addEventListener("change", () => {
      const when = document.querySelector("input[name=when]:checked").value;
      $("send-at").hidden = when !== "at";
      $("local-when").hidden = when !== "local";
    });
  }
  for (const back of document.querySelectorAll("[data-back]")) {
    back.addEventListener("click", () => ($("broadcasts").dataset.view = "list"));
  }
  list();
}

start();
