// Settings: the workspace, its WhatsApp numbers and their templates, agents and teams, API
// keys, quick replies and the sending policy's figures. Every change goes through the JSON API;
// its refusals are shown with the field they name.
"use strict";

const ROLES = ["agent", "admin", "owner"];
let agents = [];

function fail(error) {
  showError($("settings-error"), error);
  $("settings-error").scrollIntoView({ block: "center" });
}

// Runs a change, shows a refusal, and redraws what changed.
async function change(run, redraw) {
  $("settings-error").hidden = true;
  try {
    const result = await run();
    await redraw();
    return result;
  } catch (error) {
    fail(error);
    return null;
  }
}

function values(form) {
  const found = {};
  for (const [key, value] of new FormData(form).entries()) found[key] = String(value).trim();
  return found;
}

function cells(line, ...texts) {
  for (const text of texts) line.append(text instanceof Node ? wrap(text) : element("td", "", text));
  return line;
}

function wrap(node) {
  const cell = element("td");
  cell.append(node);
  return cell;
}

async function workspace() {
  const found = await api("GET", "/workspace");
  const form = $("workspace-form");
  for (const name of ["name", "timezone", "locale", "default_region"]) form.elements[name].value = found[name];
  drawPolicy(found);
}

function drawPolicy(found) {
  const body = $("policy").querySelector("tbody");
  body.replaceChildren();
  for (const [key, value] of Object.entries(found.policy)) {
    const nested = value !== null && typeof value === "object";
    const input = nested ? element("textarea", "code") : element("input");
    input.name = key;
    if (typeof value === "boolean") {
      input.type = "checkbox"; // a yes-or-no setting is ticked, not typed
      input.checked = value;
    }
    input.value = nested ? JSON.stringify(value) : value === null ? "" : String(value);
    input.dataset.original = input.value;
    input.dataset.kind = value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
    if (nested) input.rows = 2;
    input.setAttribute("aria-label", key);
    const line = element("tr");
    line.dataset.key = key;
    const label = element("td", "", key);
    if (key in found.policy_overrides) label.append(" ", element("span", "badge status-active", T.changed));
    line.append(label);
    line.append(wrap(input));
    body.append(line);
  }
}

function policyValue(input) {
  const text = input.value.trim();
  switch (input.dataset.kind) {
    case "number":
      return text === "" ? null : Number(text);
    case "boolean":
      return input.checked;
    case "object":
    case "array":
      return JSON.parse(text);
    case "null":
      return text === "" ? null : Number.isNaN(Number(text)) ? text : Number(text);
    default:
      return text;
  }
}

async function savePolicy(event) {
  event.preventDefault();
  const policy = {};
  for (const input of $("policy").querySelectorAll("input, textarea")) {
    const now = input.type === "checkbox" ? String(input.checked) : input.value;
    if (now === input.dataset.original) continue;
    try {
      policy[input.name] = policyValue(input);
    } catch {
      fail({ field: `policy.${input.name}`, message: T.not_json });
      return;
    }
  }
  if (!Object.keys(policy).length) return;
  await change(() => api("PATCH", "/workspace", { policy }), workspace);
}

async function numbers() {
  const found = await api("GET", "/whatsapp-numbers");
  const body = $("numbers").querySelector("tbody");
  body.replaceChildren();
  for (const number of found) {
    const line = element("tr");
    line.dataset.number = number.id;
    const sync = button(T.sync_templates, () =>
      change(() => api("POST", `/whatsapp-numbers/${number.id}/templates/sync`), templates),
    );
    const state = element("span", `badge ${number.is_active ? "status-active" : "status-cancelled"}`, number.is_active ? T.active : T.inactive);
    body.append(cells(line, number.name, number.display_phone_number, state, sync));
  }
  if (!found.length) body.append(cells(element("tr"), T.no_data));
}

async function templates() {
  const found = await api("GET", "/templates");
  const body = $("templates").querySelector("tbody");
  body.replaceChildren();
  for (const template of found) {
    const text = (template.components || []).find((c) => String(c.type).toUpperCase() === "BODY");
    const line = element("tr");
    line.dataset.template = `${template.name}:${template.language}`;
    body.append(
      cells(line, template.name, template.language, template.category.toLowerCase(), template.status, (text && text.text) || ""),
    );
  }
  if (!found.length) body.append(cells(element("tr"), T.no_data));
}

async function agentsAndTeams() {
  agents = await api("GET", "/agents");
  const body = $("agents").querySelector("tbody");
  body.replaceChildren();
  for (const agent of agents) {
    const line = element("tr");
    line.dataset.agent = agent.email;
    const toggle = button(agent.is_active ? T.deactivate : T.activate, () =>
      change(() => api("PATCH", `/agents/${agent.id}`, { is_active: !agent.is_active }), agentsAndTeams),
      "link",
    );
    const role = element("select");
    role.setAttribute("aria-label", `${T.role} ${agent.email}`);
    for (const name of ROLES) {
      const option = element("option", "", T["role_" + name]);
      option.value = name;
      role.append(option);
    }
    role.value = agent.role;
    role.addEventListener("change", () =>
      change(() => api("PATCH", `/agents/${agent.id}`, { role: role.value }), agentsAndTeams),
    );
    body.append(cells(line, agent.name, agent.email, role, agent.is_active ? T.active : T.inactive, toggle));
  }
  await teams();
}

async function teams() {
  const found = await api("GET", "/teams");
  const list = $("teams");
  list.replaceChildren();
  for (const team of found) {
    const item = element("li", "team");
    item.dataset.team = team.name;
    item.append(element("strong", "", team.name));
    const members = element("span", "members");
    for (const id of team.member_ids) {
      const agent = agents.find((a) => a.id === id);
      const chip = element("span", "label", (agent ? agent.name : `#${id}`) + " ");
      chip.append(button("×", () => change(() => api("DELETE", `/teams/${team.id}/members/${id}`), teams), "link"));
      members.append(chip);
    }
    const pick = element("select");
    pick.setAttribute("aria-label", `${T.add_member} ${team.name}`);
    pick.append(element("option", "", T.add_member + "…"));
    for (const agent of agents.filter((a) => !team.member_ids.includes(a.id))) {
      const option = element("option", "", agent.name);
      option.value = agent.id;
      pick.append(option);
    }
    pick.addEventListener("change", () => {
      if (pick.value) change(() => api("PUT", `/teams/${team.id}/members/${pick.value}`), teams);
    });
    item.append(members, pick, button(T.delete, () => change(() => api("DELETE", `/teams/${team.id}`), teams), "link"));
    list.append(item);
  }
}

async function keys() {
  let found;
  try {
    found = await api("GET", "/api-keys");
  } catch (error) {
    $("s-keys").querySelector(".table").replaceWith(element("p", "muted", error.message));
    $("key-form").hidden = true;
    return;
  }
  const body = $("keys").querySelector("tbody");
  body.replaceChildren();
  for (const key of found) {
    const line = element("tr");
    line.dataset.key = key.name;
    const revoke = key.revoked_at
      ? element("span", "muted", `${T.revoked} ${when(key.revoked_at)}`)
      : button(T.revoke, () => change(() => api("DELETE", `/api-keys/${key.id}`), keys), "link");
    body.append(cells(line, key.name, `${key.prefix}…`, T["role_" + key.role], key.last_used_at ? when(key.last_used_at) : "—", revoke));
  }
}

async function replies() {
  const found = await api("GET", "/quick-replies");
  const body = $("replies").querySelector("tbody");
  body.replaceChildren();
  for (const reply of found) {
    const line = element("tr");
    line.dataset.shortcut = reply.shortcut;
    const remove = button(T.delete, () => change(() => api("DELETE", `/quick-replies/${reply.id}`), replies), "link");
    body.append(cells(line, "/" + reply.shortcut, reply.title, reply.body, remove));
  }
  if (!found.length) body.append(cells(element("tr"), T.no_data));
}

// A list an admin acts on: each line has a checkbox; the header's box selects every line.
// Agents may not see it (403): the section is then hidden rather than shown broken.
async function selectable(section, path, draw) {
  let page;
  try {
    page = await api("GET", path);
  } catch (error) {
    if (error.status === 403) {
      $(section).hidden = true;
      return;
    }
    throw error;
  }
  const table = $(section).querySelector("table");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  table.querySelector("thead input").checked = false;
  for (const item of page.items) {
    const pick = element("input");
    pick.type = "checkbox";
    pick.value = item.id;
    const line = cells(element("tr"), pick, ...draw(item));
    pick.setAttribute("aria-label", line.children[1].textContent);
    body.append(line);
  }
  if (!page.items.length) body.append(cells(element("tr"), T.nothing_to_check));
  for (const control of $(section).querySelectorAll("button, thead input")) control.disabled = !page.items.length;
}

function chosen(section) {
  return [...$(section).querySelectorAll("tbody input:checked")].map((box) => Number(box.value));
}

function selectEvery(section) {
  $(section).querySelector("thead input").addEventListener("change", (event) => {
    for (const box of $(section).querySelectorAll("tbody input")) box.checked = event.target.checked;
  });
}

function uncertain() {
  return selectable("s-uncertain", "/messages/uncertain?limit=200", (item) => [
    item.recipient || "—",
    item.text || "—",
    item.wire_at ? when(item.wire_at) : "—",
    item.status_reason || "",
  ]);
}

function quarantine() {
  return selectable("s-quarantine", "/whatsapp/quarantine?limit=100", (item) => {
    const raw = element("details");
    raw.append(element("summary", "", T.show), element("pre", "code", JSON.stringify(item.raw, null, 2)));
    return [when(item.received_at), T["update_" + item.kind] || item.kind, item.reason || "", raw];
  });
}

async function decide(decision) {
  const ids = chosen("s-uncertain");
  if (!ids.length) return fail(new ApiError(T.choose_first, null, 422));
  await change(() => api("POST", "/messages/uncertain/decide", { decision, ids }), uncertain);
}

async function replay() {
  const ids = chosen("s-quarantine");
  if (!ids.length) return fail(new ApiError(T.choose_first, null, 422));
  await change(() => api("POST", "/whatsapp/quarantine/replay", { ids }), quarantine);
}

// A form's submit runs ``run`` with its values; an "add" form is emptied once it worked.
function onSubmit(id, run, { keep = false } = {}) {
  $(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    if ((await run(values(form))) !== null && !keep) form.reset();
  });
}

function start() {
  for (const select of document.querySelectorAll("select.roles")) {
    for (const name of ROLES) {
      const option = element("option", "", T["role_" + name]);
      option.value = name;
      select.append(option);
    }
  }
  onSubmit("workspace-form", (data) => change(() => api("PATCH", "/workspace", data), workspace), { keep: true });
  onSubmit("number-form", (data) => change(() => api("POST", "/whatsapp-numbers", data), numbers));
  onSubmit("agent-form", (data) => change(() => api("POST", "/agents", data), agentsAndTeams));
  onSubmit("team-form", (data) => change(() => api("POST", "/teams", data), teams));
  onSubmit("reply-form", (data) => change(() => api("POST", "/quick-replies", data), replies));
  onSubmit("key-form", async (data) => {
    const created = await change(() => api("POST", "/api-keys", data), keys);
    if (created) {
      $("new-key").hidden = false;
      $("new-key").textContent = T.key_once.replace("{key}", created.key);
    }
    return created;
  });
  $("policy-form").addEventListener("submit", savePolicy);
  selectEvery("s-uncertain");
  selectEvery("s-quarantine");
  $("uncertain-sent").addEventListener("click", () => decide("sent"));
  $("uncertain-resend").addEventListener("click", () => decide("resend"));
  $("quarantine-replay").addEventListener("click", replay);
  Promise.all([
    workspace(), numbers(), templates(), agentsAndTeams(), keys(), replies(), uncertain(), quarantine(),
  ]).then(() => {
    document.body.dataset.ready = "true";
  });
}

start();
