// The dashboard (R6): when customers write (a weekday × hour heat-map), how fast agents
// answer, how far contacts get in each sequence, and how broadcasts ended. Drawn from the
// JSON API with plain elements: no chart library, nothing loaded from elsewhere.
"use strict";

const OUTCOMES = ["read", "delivered", "sent", "sending", "queued", "deferred", "skipped", "failed", "uncertain"];

function minutes(seconds) {
  return T.minutes.replace("{n}", new Intl.NumberFormat(LANG, { maximumFractionDigits: 1 }).format(seconds / 60));
}

function weekdayNames() {
  const format = new Intl.DateTimeFormat(LANG, { weekday: "short", timeZone: "UTC" });
  // 2026-11-23 is a Monday: the grid's first row.
  return [...Array(7).keys()].map((day) => format.format(new Date(Date.UTC(2026, 10, 23 + day))));
}

async function heatmap(days) {
  const report = await api("GET", `/reports/activity?days=${days}`);
  $("heat-help").textContent = T.heatmap_help.replace("{zone}", report.timezone);
  $("heat-totals").textContent = T.messages_in_out.replace("{in}", number(report.inbound)).replace("{out}", number(report.outbound));
  const busiest = Math.max(1, ...report.grid.flat());
  const box = $("heatmap");
  box.replaceChildren();
  const head = element("div", "heat-row", "");
  head.setAttribute("role", "row");
  const corner = element("span", "heat-label");
  corner.setAttribute("role", "columnheader");
  head.append(corner);
  for (let hour = 0; hour < 24; hour += 1) {
    const label = element("span", "heat-hour", hour % 3 === 0 ? String(hour) : "");
    label.setAttribute("role", "columnheader");
    label.setAttribute("aria-label", `${String(hour).padStart(2, "0")}:00`);
    head.append(label);
  }
  box.append(head);
  weekdayNames().forEach((name, day) => {
    const row = element("div", "heat-row");
    row.setAttribute("role", "row");
    const label = element("span", "heat-label", name);
    label.setAttribute("role", "rowheader");
    row.append(label);
    report.grid[day].forEach((count, hour) => {
      const cell = element("span", "heat-cell");
      cell.setAttribute("role", "cell");
      cell.dataset.day = day;
      cell.dataset.hour = hour;
      cell.dataset.count = count;
      cell.style.setProperty("--level", count / busiest);
      cell.title = `${name} ${String(hour).padStart(2, "0")}:00 · ${number(count)}`;
      row.append(cell);
    });
    box.append(row);
  });
}

async function responses(days) {
  const [report, agents] = await Promise.all([api("GET", `/reports/response-times?days=${days}`), api("GET", "/agents")]);
  $("responses-help").textContent = T.responses_help
    .replace("{target}", minutes(report.target_seconds))
    .replace("{slow}", minutes(report.slow_after_seconds));
  const names = new Map(agents.map((agent) => [agent.id, agent.name || agent.email]));
  const list = $("responses");
  list.replaceChildren();
  if (!report.agents.length) {
    list.append(element("li", "muted", T.no_data));
    return;
  }
  const longest = Math.max(report.slow_after_seconds, ...report.agents.map((a) => a.median_seconds));
  for (const agent of report.agents) {
    const item = element("li", agent.slow ? "slow" : "");
    item.dataset.agent = agent.agent_id;
    const label = element("span", "bar-label", names.get(agent.agent_id) || `#${agent.agent_id}`);
    if (agent.slow) label.append(" ", element("span", "badge status-failed", T.slow_agent));
    const track = element("span", "track");
    const fill = element("span", "fill");
    fill.style.width = `${(100 * agent.median_seconds) / longest}%`;
    const target = element("span", "target");
    target.style.left = `${(100 * report.target_seconds) / longest}%`;
    track.append(fill, target);
    const figures = `${minutes(agent.median_seconds)} · ${T.answered.replace("{n}", number(agent.answered))} · ${T.within_target.replace("{n}", number(agent.within_target))}`;
    item.append(label, track, element("span", "bar-value", figures));
    list.append(item);
  }
}

async function funnels() {
  const sequences = (await api("GET", "/sequences")).filter((s) => s.status !== "archived");
  sequences.sort((a, b) => (b.status === "active") - (a.status === "active"));
  const box = $("funnels");
  box.replaceChildren();
  if (!sequences.length) {
    box.append(element("p", "muted", T.no_data));
    return;
  }
  for (const sequence of sequences.slice(0, 4)) {
    const [detail, statistics] = await Promise.all([
      api("GET", `/sequences/${sequence.id}`),
      api("GET", `/sequences/${sequence.id}/statistics`),
    ]);
    const card = element("div", "funnel");
    card.dataset.sequence = sequence.id;
    const link = element("a", "", sequence.name);
    link.href = `/app/sequences?sequence=${sequence.id}`;
    const title = element("h3");
    title.append(link);
    card.append(title);
    const steps = detail.definition.steps.filter((step) => step.type !== "wait");
    const most = Math.max(1, ...steps.map((step) => (statistics[step.id] || {}).entered || 0));
    const list = element("ul", "bars");
    for (const step of steps) {
      const entered = (statistics[step.id] || {}).entered || 0;
      const item = element("li");
      item.dataset.step = step.id;
      const track = element("span", "track");
      const fill = element("span", "fill");
      fill.style.width = `${(100 * entered) / most}%`;
      track.append(fill);
      item.append(element("span", "bar-label", step.id), track, element("span", "bar-value", number(entered)));
      list.append(item);
    }
    card.append(list);
    box.append(card);
  }
}

async function broadcasts() {
  const recent = (await api("GET", "/broadcasts")).slice(-5).reverse();
  const list = $("broadcast-outcomes");
  list.replaceChildren();
  if (!recent.length) {
    list.append(element("li", "muted", T.no_data));
    return;
  }
  for (const broadcast of recent) {
    const { outcomes } = await api("GET", `/broadcasts/${broadcast.id}/statistics`);
    const total = Object.values(outcomes).reduce((sum, n) => sum + n, 0) || 1;
    const item = element("li");
    item.dataset.broadcast = broadcast.id;
    const bar = element("span", "bar track");
    for (const status of OUTCOMES) {
      if (!outcomes[status]) continue;
      const part = element("span", status);
      part.style.width = `${(100 * outcomes[status]) / total}%`;
      part.title = `${T["status_" + status] || status} ${outcomes[status]}`;
      bar.append(part);
    }
    const summary = OUTCOMES.filter((s) => outcomes[s]).map((s) => `${T["status_" + s] || s} ${number(outcomes[s])}`);
    item.append(element("span", "bar-label", broadcast.name), bar, element("span", "bar-value", summary.join(" · ")));
    list.append(item);
  }
}

async function draw() {
  const days = $("days").value;
  await Promise.all([heatmap(days), responses(days), funnels(), broadcasts()]);
  document.body.dataset.ready = "true";
}

$("days").addEventListener("change", draw);
draw();
