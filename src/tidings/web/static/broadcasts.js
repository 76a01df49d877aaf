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

async function startCreating() {
  clearTimeout(polling);
  current = null;
  showPane("creating");
  $("estimate").hidden = true;
  $("form-error").hidden = true;
  const templates = (await api("GET", "/templates")).filter((t) => t.status === "approved" || t.status === "local");
  const select = $("template");
  select.replaceChildren();
  for (const template of templates) {
    const option = element("option", "", `${template.name} · ${template.language} · ${template.category.toLowerCase()}`);
    option.value = JSON.stringify({ name: template.name, language: template.language, number_id: template.number_id });
    select.append(option);
  }
  await list();
}

function request(dryRun) {
  const chosen = JSON.parse($("template").value || "{}");
  const template = { name: chosen.name, language: { code: chosen.language } };
  const parameters = $("parameters").value.trim();
  if (parameters) {
    template.components = [{ type: "body", parameters: JSON.parse(parameters) }];
  }
  const audience = {};
  const tags = $("tags").value.split(",").map((tag) => tag.trim()).filter(Boolean);
  if (tags.length) audience.tags = tags;
  const condition = $("condition").value.trim();
  if (condition) audience.condition = JSON.parse(condition);
  return {
    name: $("name").value.trim() || "—",
    purpose: $("purpose").value,
    number_id: chosen.number_id,
    template,
    audience,
    dry_run: dryRun,
  };
}

// What the sending policy will decide, as planning will: sent as scheduled, held (quiet hours,
// caps) with the reason, not sent (consent, do-not-contact), and from when to when.
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

async function submit(dryRun) {
  $("form-error").hidden = true;
  let body;
  try {
    body = request(dryRun);
  } catch {
    showError($("form-error"), { message: T.not_json });
    return;
  }
  try {
    const created = await api("POST", "/broadcasts", body);
    drawEstimate(created.estimate);
    if (!dryRun && created.broadcast) await open(created.broadcast.id);
  } catch (error) {
    showError($("form-error"), error);
  }
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
  for (const back of document.querySelectorAll("[data-back]")) {
    back.addEventListener("click", () => ($("broadcasts").dataset.view = "list"));
  }
  list();
}

start();
