// Rules and segments: a rule's definition in the condition language with a live count of the
// contacts its condition matches now, turning it on and off, and its recent runs (traces); a
// segment's condition with the same live count, its members, a refresh on demand; keyword
// groups, their words one per line, and a message tried against them (how it is cut into
// words, which groups it sets off).
"use strict";

const EXAMPLE = {
  trigger: { on: "keyword", keyword: "discount" },
  condition: { keyword: "discount", at_least: 2, within: "30d" },
  actions: [{ do: "add_tag", tag: "price-sensitive" }],
  guard: { times: 1, per: "30d" },
};

let current = null; // the rule open, null for a new one
let counting = null; // the pending count's timer
let currentSegment = null; // the segment open, null for a new one
let currentGroup = null; // the keyword group open, null for a new one
const names = new Map(); // contact id → the name shown for it
let watching = null; // the open rule's runs, refreshed while it is shown
const RUNS_EVERY_MS = 2000;

async function list() {
  const rules = await api("GET", "/rules");
  const target = $("rule-list");
  target.replaceChildren();
  if (!rules.length) {
    target.append(element("li", "empty", T.no_rules));
    return rules;
  }
  for (const rule of rules) {
    const item = element("li", "conversation");
    item.dataset.id = rule.id;
    const head = element("span", "name", rule.name);
    head.append(" ", element("span", `badge ${rule.enabled ? "status-active" : ""}`, rule.enabled ? T.enabled : T.disabled));
    const trigger = rule.definition.trigger || {};
    const what = Object.entries(trigger).map(([key, value]) => (key === "on" ? value : `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`));
    item.append(head, element("span", "preview", what.join(" · ")));
    item.setAttribute("aria-current", String(current !== null && current.id === rule.id));
    item.addEventListener("click", () => open(rule.id));
    target.append(item);
  }
  return rules;
}

function show(rule) {
  current = rule;
  currentSegment = null;
  $("pick").hidden = true;
  $("segment-detail").hidden = true;
  $("keyword-detail").hidden = true;
  $("detail").hidden = false;
  $("rules").dataset.view = "thread";
  $("rule-error").hidden = true;
  $("rule-title").textContent = rule ? rule.name : T.new_rule;
  $("rule-state").hidden = !rule;
  $("toggle").hidden = !rule;
  $("delete").hidden = !rule;
  $("runs-section").hidden = !rule;
  if (rule) {
    $("rule-state").textContent = rule.enabled ? T.enabled : T.disabled;
    $("rule-state").className = `badge ${rule.enabled ? "status-active" : ""}`;
    $("toggle").textContent = rule.enabled ? T.disable : T.enable;
  }
  $("rule-name").value = rule ? rule.name : "";
  $("rule-definition").value = JSON.stringify(rule ? rule.definition : EXAMPLE, null, 2);
  recount();
}

async function open(id) {
  const [rule, runs] = await Promise.all([api("GET", `/rules/${id}`), api("GET", `/rules/${id}/runs?limit=50`)]);
  show(rule);
  await drawRuns(runs);
  await list();
  watch(id);
}

// New runs appear as customers write, without a reload (the traces of O3).
function watch(id) {
  clearInterval(watching);
  watching = setInterval(async () => {
    if (!current || current.id !== id || document.hidden) return;
    await drawRuns(await api("GET", `/rules/${id}/runs?limit=50`));
  }, RUNS_EVERY_MS);
}

async function nameOf(contactId) {
  if (!names.has(contactId)) {
    names.set(
      contactId,
      api("GET", `/contacts/${contactId}`)
        .then((contact) => contact.name || contact.phone || `#${contactId}`)
        .catch(() => `#${contactId}`),
    );
  }
  return names.get(contactId);
}

async function drawRuns(runs) {
  const labels = await Promise.all(runs.map((run) => nameOf(run.contact_id)));
  const body = $("runs").querySelector("tbody");
  body.replaceChildren();
  if (!runs.length) {
    const line = element("tr");
    const cell = element("td", "muted", T.no_runs);
    cell.colSpan = 4;
    line.append(cell);
    body.append(line);
    return;
  }
  runs.forEach((run, index) => {
    const line = element("tr");
    line.dataset.outcome = run.status;
    const contact = element("a", "", labels[index]);
    contact.href = `/app/contacts?contact=${run.contact_id}`;
    const who = element("td");
    who.append(contact);
    line.append(
      element("td", "", when(run.created_at)),
      who,
      element("td", `outcome status-${run.status}`, T["outcome_" + run.status] || run.status),
      element("td", "", run.reason),
    );
    body.append(line);
  });
}

function definition() {
  try {
    return JSON.parse($("rule-definition").value);
  } catch {
    return undefined;
  }
}

// The count follows the typing, a moment after it stops: how many contacts the condition
// matches now (the same engine as segments).
function recount() {
  liveCount(() => {
    const parsed = definition();
    return parsed === undefined ? undefined : parsed.condition || null;
  }, $("count"));
}

function liveCount(condition, target) {
  clearTimeout(counting);
  counting = setTimeout(async () => {
    const wanted = condition();
    target.dataset.state = "";
    if (wanted === undefined) {
      target.dataset.state = "bad";
      target.textContent = T.not_json;
      return;
    }
    if (wanted === null) {
      target.textContent = T.no_condition;
      return;
    }
    try {
      const answer = await api("POST", "/segments/count", { condition: wanted });
      target.textContent = T.matching_now.replace("{n}", number(answer.contacts));
      target.dataset.contacts = answer.contacts;
    } catch (error) {
      target.dataset.state = "bad";
      target.textContent = error.field ? `${error.field}: ${error.message}` : error.message;
    }
  }, 300);
}

async function save(event) {
  event.preventDefault();
  $("rule-error").hidden = true;
  const parsed = definition();
  if (parsed === undefined) {
    showError($("rule-error"), { field: "definition", message: T.not_json });
    return;
  }
  const body = { name: $("rule-name").value.trim(), definition: parsed };
  try {
    const saved = current
      ? await api("PATCH", `/rules/${current.id}`, body)
      : await api("POST", "/rules", { ...body, enabled: true });
    await open(saved.id);
  } catch (error) {
    showError($("rule-error"), error);
  }
}

async function toggle() {
  await api("PATCH", `/rules/${current.id}`, { enabled: !current.enabled });
  await open(current.id);
}

async function remove() {
  await api("DELETE", `/rules/${current.id}`);
  current = null;
  $("detail").hidden = true;
  $("pick").hidden = false;
  await list();
}

// --- segments -------------------------------------------------------------------------------

async function listSegments() {
  const segments = await api("GET", "/segments");
  const target = $("segment-list");
  target.replaceChildren();
  if (!segments.length) target.append(element("li", "empty", T.no_segments));
  for (const segment of segments) {
    const item = element("li", "conversation");
    item.dataset.id = segment.id;
    const head = element("span", "name", segment.name);
    head.append(" ", element("span", "badge", number(segment.member_count)));
    item.append(head, element("span", "preview", segment.description || JSON.stringify(segment.condition)));
    item.setAttribute("aria-current", String(currentSegment !== null && currentSegment.id === segment.id));
    item.addEventListener("click", () => openSegment(segment.id));
    target.append(item);
  }
}

function segmentCondition() {
  try {
    return JSON.parse($("segment-condition").value);
  } catch {
    return undefined;
  }
}

function showSegment(segment) {
  clearInterval(watching);
  current = null;
  currentSegment = segment;
  $("pick").hidden = true;
  $("detail").hidden = true;
  $("keyword-detail").hidden = true;
  $("segment-detail").hidden = false;
  $("rules").dataset.view = "thread";
  $("segment-error").hidden = true;
  $("segment-title").textContent = segment ? segment.name : T.new_segment;
  $("segment-count").hidden = !segment;
  $("segment-refresh").hidden = !segment;
  $("segment-delete").hidden = !segment;
  $("members-section").hidden = !segment;
  $("segment-name").value = segment ? segment.name : "";
  $("segment-description").value = segment ? segment.description : "";
  $("segment-condition").value = JSON.stringify(segment ? segment.condition : { has_tag: "vip" }, null, 2);
  if (segment) {
    $("segment-count").textContent = T.members_count.replace("{n}", number(segment.member_count));
    $("segment-refreshed").textContent = segment.refreshed_at ? `${T.refreshed} ${when(segment.refreshed_at)}` : "";
  }
  liveCount(segmentCondition, $("segment-live"));
}

async function openSegment(id) {
  const [segment, members] = await Promise.all([
    api("GET", `/segments/${id}`),
    api("GET", `/segments/${id}/members?limit=50`),
  ]);
  showSegment(segment);
  const labels = await Promise.all(members.items.map((member) => nameOf(member.contact_id)));
  $("members").replaceChildren(
    ...members.items.map((member, index) => {
      const item = element("li");
      const link = element("a", "", labels[index]);
      link.href = `/app/contacts?contact=${member.contact_id}`;
      item.append(link, " ", element("span", "muted", when(member.entered_at)));
      return item;
    }),
  );
  if (!members.items.length) $("members").append(element("li", "muted", T.nothing_yet));
  await listSegments();
}

async function saveSegment(event) {
  event.preventDefault();
  $("segment-error").hidden = true;
  const condition = segmentCondition();
  if (condition === undefined) {
    showError($("segment-error"), { field: "condition", message: T.not_json });
    return;
  }
  const body = { name: $("segment-name").value.trim(), description: $("segment-description").value.trim(), condition };
  try {
    const saved = currentSegment
      ? await api("PATCH", `/segments/${currentSegment.id}`, body)
      : await api("POST", "/segments", body);
    await openSegment(saved.id);
  } catch (error) {
    showError($("segment-error"), error);
  }
}

// --- keyword groups -------------------------------------------------------------------------

async function listGroups() {
  const groups = await api("GET", "/keywords");
  const target = $("keyword-list");
  target.replaceChildren();
  if (!groups.length) target.append(element("li", "empty", T.no_keyword_groups));
  for (const group of groups) {
    const item = element("li", "conversation");
    item.dataset.name = group.name;
    const head = element("span", "name", group.name);
    head.append(" ", element("span", "badge", T.terms_count.replace("{n}", number(group.terms.length))));
    item.append(head, element("span", "preview", group.terms.join(" · ")));
    item.setAttribute("aria-current", String(currentGroup !== null && currentGroup.name === group.name));
    item.addEventListener("click", () => showGroup(group));
    target.append(item);
  }
  return groups;
}

function showGroup(group) {
  clearInterval(watching);
  current = null;
  currentSegment = null;
  currentGroup = group;
  $("pick").hidden = true;
  $("detail").hidden = true;
  $("segment-detail").hidden = true;
  $("keyword-detail").hidden = false;
  $("rules").dataset.view = "thread";
  $("keyword-error").hidden = true;
  $("keyword-title").textContent = group ? group.name : T.new_keyword_group;
  $("keyword-count").hidden = !group;
  $("keyword-delete").hidden = !group;
  // A group is known by its name: an open group keeps it (a new name is a new group).
  $("keyword-name").value = group ? group.name : "";
  $("keyword-name").readOnly = Boolean(group);
  $("keyword-terms").value = group ? group.terms.join("\n") : "";
  if (group) $("keyword-count").textContent = T.terms_count.replace("{n}", number(group.terms.length));
  $("keyword-words").textContent = "";
  $("keyword-hits").textContent = "";
  listGroups();
}

async function saveGroup(event) {
  event.preventDefault();
  $("keyword-error").hidden = true;
  const name = $("keyword-name").value.trim();
  const terms = $("keyword-terms").value.split("\n").map((line) => line.trim()).filter(Boolean);
  try {
    const saved = await api("PUT", `/keywords/${encodeURIComponent(name)}`, { terms });
    showGroup(saved);
  } catch (error) {
    showError($("keyword-error"), error);
  }
}

async function removeGroup() {
  $("keyword-error").hidden = true;
  try {
    await api("DELETE", `/keywords/${encodeURIComponent(currentGroup.name)}`);
  } catch (error) {
    showError($("keyword-error"), error); // still used by a rule or segment: it says which
    return;
  }
  currentGroup = null;
  $("keyword-detail").hidden = true;
  $("pick").hidden = false;
  await listGroups();
}

async function tryMessage(event) {
  event.preventDefault();
  const text = $("keyword-sample").value;
  if (!text.trim()) return;
  const answer = await api("POST", "/keywords/detect", { text });
  $("keyword-words").textContent = T.read_as.replace("{words}", answer.words.join(" | "));
  $("keyword-hits").textContent = answer.keywords.length
    ? T.sets_off.replace("{groups}", answer.keywords.join(", "))
    : T.sets_off_nothing;
  $("keyword-hits").dataset.groups = answer.keywords.join(",");
}

function start() {
  $("new-rule").addEventListener("click", () => {
    clearInterval(watching);
    show(null);
    list();
  });
  $("rule-form").addEventListener("submit", save);
  $("rule-definition").addEventListener("input", recount);
  $("toggle").addEventListener("click", toggle);
  $("delete").addEventListener("click", remove);
  $("new-segment").addEventListener("click", () => {
    showSegment(null);
    listSegments();
  });
  $("segment-form").addEventListener("submit", saveSegment);
  $("segment-condition").addEventListener("input", () => liveCount(segmentCondition, $("segment-live")));
  $("segment-refresh").addEventListener("click", async () => {
    await api("POST", `/segments/${currentSegment.id}/refresh`);
    await openSegment(currentSegment.id);
  });
  $("segment-delete").addEventListener("click", async () => {
    await api("DELETE", `/segments/${currentSegment.id}`);
    currentSegment = null;
    $("segment-detail").hidden = true;
    $("pick").hidden = false;
    await listSegments();
  });
  $("new-keywords").addEventListener("click", () => showGroup(null));
  $("keyword-form").addEventListener("submit", saveGroup);
  $("keyword-delete").addEventListener("click", removeGroup);
  $("keyword-try").addEventListener("submit", tryMessage);
  for (const back of document.querySelectorAll("[data-back]")) {
    back.addEventListener("click", () => ($("rules").dataset.view = "list"));
  }
  list();
  listSegments();
  listGroups();
}

start();
