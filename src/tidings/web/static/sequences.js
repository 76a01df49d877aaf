// Sequences: the list with enrollment counts; a sequence's steps with their statistics (S5),
// pause and resume, export and import of the file (S6), a test lead's preview (S7) and a
// step-list editor that saves a new version. A client of the JSON API (common.js).
"use strict";

const KINDS = {
  send_whatsapp: { text: "Hi {{ contact.first_name }}", purpose: "utility", next: "" },
  send_email: { subject: "", body: "", purpose: "marketing", next: "" },
  wait: { duration: "1d", next: "" },
  condition: { if: { read: "" }, yes: "", no: "" },
  split: { branches: [{ percent: 50, next: "" }, { percent: 50, next: "" }] },
  add_tag: { tag: "", next: "" },
  remove_tag: { tag: "", next: "" },
  add_to_list: { list: "", next: "" },
  remove_from_list: { list: "", next: "" },
  set_field: { field: "", value: "", next: "" },
  change_score: { by: 10, next: "" },
  notify: { message: "", next: "" },
  webhook: { url: "https://", next: "" },
  enroll: { sequence: "", next: "" },
  goal: { when: { event: "order.placed" }, next: "" },
  exit: { reason: "" },
};
const STATISTICS = ["entered", "sent", "delivered", "read", "clicked", "replied", "converted", "exited"];

let current = null; // the open sequence (its detail, with the definition)
let draft = null; // the steps being edited

async function list() {
  const sequences = await api("GET", "/sequences");
  const target = $("sequence-list");
  target.replaceChildren();
  if (!sequences.length) {
    target.append(element("li", "empty", T.no_sequences));
    return;
  }
  for (const sequence of sequences) {
    const item = element("li", "conversation");
    item.dataset.id = sequence.id;
    const head = element("span", "name", sequence.name);
    head.append(" ", element("span", `badge status-${sequence.status}`, T["status_" + sequence.status] || sequence.status));
    const counts = sequence.enrollments || {};
    const parts = ["active", "completed", "converted", "exited"]
      .filter((status) => counts[status])
      .map((status) => `${T["enrolled_" + status] || status} ${number(counts[status])}`);
    item.append(head, element("span", "preview", parts.join(" · ") || T.nobody_enrolled));
    item.addEventListener("click", () => open(sequence.id));
    target.append(item);
  }
}

function summary(step) {
  switch (step.type) {
    case "send_whatsapp":
      return [step.text, step.template && `${T.template} ${step.template.name} (${step.template.language})`]
        .filter(Boolean)
        .join(" / ");
    case "send_email":
      return step.subject || `${T.template} ${step.template}`;
    case "wait":
      if (step.until_event) return `${step.until_event.event} · ${T.timeout} ${step.timeout}`;
      return step.duration || JSON.stringify(step.until);
    case "condition":
      return JSON.stringify(step.if);
    case "split":
      return step.branches.map((b) => `${b.name || b.next} ${b.percent}%`).join(" · ");
    case "add_tag":
    case "remove_tag":
      return step.tag;
    case "add_to_list":
    case "remove_from_list":
      return step.list;
    case "set_field":
      return `${step.field} = ${step.value}`;
    case "change_score":
      return (step.by > 0 ? "+" : "") + step.by;
    case "notify":
      return step.message;
    case "webhook":
      return step.url;
    case "enroll":
      return step.sequence;
    case "goal":
      return step.when && step.when.event;
    case "exit":
      return step.reason || "";
    default:
      return "";
  }
}

function exits(step) {
  if (step.type === "condition") return [[T.branch_yes, step.yes], [T.branch_no, step.no]];
  if (step.type === "split") return step.branches.map((b, i) => [b.name || `${T.branch} ${i + 1}`, b.next]);
  const found = [];
  if (step.next) found.push(["→", step.next]);
  if (step.on_timeout) found.push([T.timeout, step.on_timeout]);
  return found;
}

function drawSteps(definition, statistics) {
  const target = $("steps");
  target.replaceChildren();
  for (const step of definition.steps) {
    const card = element("li", "step");
    card.dataset.step = step.id;
    card.id = "step-" + step.id;
    const head = element("div", "step-head");
    head.append(element("strong", "", step.id), element("span", "badge", T["kind_" + step.type] || step.type));
    if (step.delay) head.append(element("span", "muted", `${T.after} ${step.delay}`));
    card.append(head, element("p", "step-summary", summary(step)));
    const links = exits(step);
    if (links.length) {
      const where = element("p", "step-next");
      for (const [label, to] of links) {
        const link = element("a", "", `${label} ${to}`);
        link.href = "#step-" + to;
        where.append(link, " ");
      }
      card.append(where);
    } else {
      card.append(element("p", "step-next muted", T.sequence_ends));
    }
    const figures = statistics[step.id] || {};
    const table = element("dl", "figures");
    for (const name of STATISTICS) {
      if (!figures[name] && name !== "entered") continue;
      const cell = element("div", "figure");
      cell.dataset.figure = name;
      cell.append(element("dt", "", T["stat_" + name] || name), element("dd", "", number(figures[name])));
      table.append(cell);
    }
    card.append(table);
    target.append(card);
  }
}

// --- the graph: steps in rows by their distance from the first, arrows to where they lead ---

const SVG = "http://www.w3.org/2000/svg";
const BOX = { width: 150, height: 46, gapX: 24, gapY: 38 };

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function layers(steps) {
  const byId = new Map(steps.map((step) => [step.id, step]));
  const depth = new Map([[steps[0].id, 0]]);
  const queue = [steps[0].id];
  for (const goal of steps.filter((step) => step.type === "goal")) {
    if (!depth.has(goal.id)) {
      depth.set(goal.id, 0);
      queue.push(goal.id);
    }
  }
  while (queue.length) {
    const id = queue.shift();
    for (const [, to] of exits(byId.get(id))) {
      if (byId.has(to) && !depth.has(to)) {
        depth.set(to, depth.get(id) + 1);
        queue.push(to);
      }
    }
  }
  const rows = [];
  for (const step of steps) (rows[depth.get(step.id) ?? rows.length] ||= []).push(step);
  return rows.filter(Boolean);
}

function drawGraph(definition, statistics) {
  const rows = layers(definition.steps);
  const widest = Math.max(...rows.map((row) => row.length));
  const width = widest * (BOX.width + BOX.gapX) + BOX.gapX;
  const height = rows.length * (BOX.height + BOX.gapY) + BOX.gapY;
  const where = new Map();
  rows.forEach((row, r) => {
    const offset = (width - row.length * (BOX.width + BOX.gapX) + BOX.gapX) / 2;
    row.forEach((step, c) => {
      where.set(step.id, { x: offset + c * (BOX.width + BOX.gapX), y: BOX.gapY / 2 + r * (BOX.height + BOX.gapY) });
    });
  });
  const graph = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, role: "img", class: "graph" });
  graph.setAttribute("aria-label", T.steps);
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrow-head" }));
  const defs = svg("defs", {});
  defs.append(marker);
  graph.append(defs);
  for (const step of definition.steps) {
    const from = where.get(step.id);
    for (const [label, to] of exits(step)) {
      const target = where.get(to);
      if (!target) continue;
      const x1 = from.x + BOX.width / 2;
      const y1 = from.y + BOX.height;
      const x2 = target.x + BOX.width / 2;
      const y2 = target.y;
      const back = y2 <= from.y; // a loop back up: drawn round the side
      const d = back
        ? `M ${from.x + BOX.width} ${from.y + BOX.height / 2} C ${from.x + BOX.width + 40} ${from.y + BOX.height / 2}, ${target.x + BOX.width + 40} ${target.y + BOX.height / 2}, ${target.x + BOX.width} ${target.y + BOX.height / 2}`
        : `M ${x1} ${y1} C ${x1} ${y1 + BOX.gapY / 2}, ${x2} ${y2 - BOX.gapY / 2}, ${x2} ${y2}`;
      graph.append(svg("path", { d, class: "edge", "marker-end": "url(#arrow)" }));
      if (label !== "→") graph.append(svg("text", { x: (x1 + x2) / 2 + 4, y: (y1 + y2) / 2, class: "edge-label" }, label));
    }
  }
  for (const step of definition.steps) {
    const at = where.get(step.id);
    const node = svg("a", { href: `#step-${step.id}`, class: `node kind-${step.type}` });
    node.dataset.step = step.id;
    node.append(svg("rect", { x: at.x, y: at.y, width: BOX.width, height: BOX.height, rx: 8 }));
    node.append(svg("text", { x: at.x + 8, y: at.y + 18, class: "node-id" }, step.id.slice(0, 20)));
    const entered = (statistics[step.id] || {}).entered || 0;
    node.append(svg("text", { x: at.x + 8, y: at.y + 36, class: "node-figure" }, `${T["kind_" + step.type] || step.type} · ${number(entered)}`));
    graph.append(node);
  }
  $("graph").replaceChildren(graph);
}

async function open(id) {
  const [detail, statistics] = await Promise.all([
    api("GET", `/sequences/${id}`),
    api("GET", `/sequences/${id}/statistics`),
  ]);
  current = detail;
  $("pick").hidden = true;
  $("detail").hidden = false;
  $("editor").hidden = true;
  $("sequences").dataset.view = "thread";
  $("sequence-name").textContent = `${detail.name} · v${detail.current_version}`;
  $("sequence-status").textContent = T["status_" + detail.status] || detail.status;
  $("sequence-status").className = `badge status-${detail.status}`;
  const toggle = $("toggle");
  toggle.hidden = detail.status === "archived";
  toggle.textContent = detail.status === "active" ? T.pause : detail.status === "paused" ? T.resume : T.activate;
  drawGraph(detail.definition, statistics);
  drawSteps(detail.definition, statistics);
  for (const item of document.querySelectorAll("#sequence-list li")) {
    item.setAttribute("aria-current", String(item.dataset.id === String(id)));
  }
}

async function toggle() {
  const next = current.status === "active" ? "paused" : "active";
  await api("POST", `/sequences/${current.id}/status`, { status: next });
  await Promise.all([open(current.id), list()]);
}

async function exportFile() {
  const text = await api("GET", `/sequences/${current.id}/export?format=yaml`);
  download(`${current.name}.yaml`, text, "application/yaml");
}

async function importFile(event) {
  const file = event.target.files[0];
  if (!file) return;
  $("import-error").hidden = true;
  try {
    const imported = await api("POST", "/sequences/import", await file.text());
    await list();
    await open(imported.sequence.id);
  } catch (error) {
    showError($("import-error"), error);
  } finally {
    event.target.value = "";
  }
}

async function preview(event) {
  event.preventDefault();
  $("preview-error").hidden = true;
  const behaviours = $("behaviours").value.split("\n").map((line) => line.trim()).filter(Boolean);
  try {
    const result = await api("POST", "/sequences/preview", {
      sequence_id: current.id,
      behaviours,
      contact: { first_name: $("lead-name").value.trim() || "Ploy" },
    });
    const body = $("preview").querySelector("tbody");
    body.replaceChildren();
    for (const entry of result.entries) {
      const line = element("tr");
      line.dataset.kind = entry.kind;
      line.append(
        element("td", "", when(entry.at)),
        element("td", "", entry.step_id || ""),
        element("td", "", T["entry_" + entry.kind] || entry.kind),
        element("td", "", entry.text),
      );
      body.append(line);
    }
    $("preview").hidden = false;
    $("preview-end").textContent = result.ended ? `${T["ended_" + result.ended] || result.ended}: ${result.end_reason || ""}` : T.still_running;
  } catch (error) {
    showError($("preview-error"), error);
  }
}

// --- the step-list editor: each step's fields as inputs; nested values as JSON --------------

function startEditing() {
  draft = structuredClone(current.definition.steps);
  $("editor").hidden = false;
  $("editor-error").hidden = true;
  drawEditor();
  $("editor").scrollIntoView({ block: "start" });
}

function fieldInput(step, key, index) {
  const value = step[key];
  const nested = value !== null && typeof value === "object";
  const input = nested ? element("textarea") : element("input");
  input.name = key;
  input.value = nested ? JSON.stringify(value) : value === null || value === undefined ? "" : String(value);
  if (nested) input.rows = 2;
  input.addEventListener("change", () => {
    const text = input.value.trim();
    input.removeAttribute("aria-invalid");
    delete input.dataset.badJson;
    if (text === "") {
      delete draft[index][key];
      return;
    }
    if (nested) {
      try {
        draft[index][key] = JSON.parse(text);
      } catch {
        input.setAttribute("aria-invalid", "true");
        input.dataset.badJson = "1";
      }
    } else if (typeof value === "number" && !Number.isNaN(Number(text))) {
      draft[index][key] = Number(text);
    } else if (typeof value === "boolean") {
      draft[index][key] = text === "true";
    } else {
      draft[index][key] = text;
    }
  });
  return input;
}

function drawEditor() {
  const target = $("editor-steps");
  target.replaceChildren();
  draft.forEach((step, index) => {
    const card = element("li", "step");
    card.dataset.index = index;
    card.dataset.step = step.id;
    const head = element("div", "step-head");
    const id = element("input");
    id.name = "id";
    id.value = step.id;
    id.setAttribute("aria-label", T.step_id);
    id.addEventListener("change", () => {
      draft[index].id = id.value.trim();
      card.dataset.step = draft[index].id;
    });
    head.append(id, element("span", "badge", T["kind_" + step.type] || step.type));
    head.append(
      button("↑", () => move(index, -1), "link"),
      button("↓", () => move(index, 1), "link"),
      button(T.remove, () => {
        draft.splice(index, 1);
        drawEditor();
      }, "link"),
    );
    card.append(head);
    const keys = Object.keys(step).filter((key) => key !== "id" && key !== "type");
    for (const key of keys) {
      const label = element("label", "field", key + " ");
      label.append(fieldInput(step, key, index));
      card.append(label);
    }
    target.append(card);
  });
}

function move(index, by) {
  const to = index + by;
  if (to < 0 || to >= draft.length) return;
  [draft[index], draft[to]] = [draft[to], draft[index]];
  drawEditor();
}

function addStep() {
  const kind = $("new-kind").value;
  const taken = new Set(draft.map((step) => step.id));
  let n = draft.length + 1;
  while (taken.has(`${kind}-${n}`)) n += 1;
  const skeleton = structuredClone(KINDS[kind]);
  for (const key of Object.keys(skeleton)) if (skeleton[key] === "" && key === "next") delete skeleton[key];
  draft.push({ id: `${kind}-${n}`, type: kind, ...skeleton });
  drawEditor();
}

async function save() {
  $("editor-error").hidden = true;
  const badJson = document.querySelector("#editor-steps [data-bad-json]");
  if (badJson) {
    showError($("editor-error"), { message: `${T.not_json}: ${badJson.name}` });
    badJson.focus();
    return;
  }
  for (const marked of document.querySelectorAll("#editor-steps [aria-invalid]")) marked.removeAttribute("aria-invalid");
  try {
    await api("PUT", `/sequences/${current.id}`, { definition: { ...current.definition, steps: draft } });
    await open(current.id);
  } catch (error) {
    showError($("editor-error"), error);
    // "definition.steps[2].next": point at the step and the field at fault.
    const found = /^definition\.steps\[(\d+)\](?:\.(\w+))?/.exec(error.field || "");
    if (found) {
      const card = document.querySelector(`#editor-steps li[data-index="${found[1]}"]`);
      const input = card && (card.querySelector(`[name="${found[2]}"]`) || card.querySelector("input"));
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.focus();
      }
    }
  }
}

function start() {
  for (const kind of Object.keys(KINDS)) {
    const option = element("option", "", T["kind_" + kind] || kind);
    option.value = kind;
    $("new-kind").append(option);
  }
  $("toggle").addEventListener("click", toggle);
  $("export").addEventListener("click", exportFile);
  $("import-file").addEventListener("change", importFile);
  $("preview-form").addEventListener("submit", preview);
  $("edit").addEventListener("click", startEditing);
  $("cancel-edit").addEventListener("click", () => ($("editor").hidden = true));
  $("add-step").addEventListener("click", addStep);
  $("save").addEventListener("click", save);
  $("back").addEventListener("click", () => ($("sequences").dataset.view = "list"));
  list().then(() => {
    const wanted = new URLSearchParams(window.location.search).get("sequence");
    if (wanted) open(wanted);
  });
}

start();
