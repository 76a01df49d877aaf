// Contacts: search, a profile, the timeline and the "why" panel (what rules and the sending
// policy did, and why: O3). A client of the JSON API; everything is set as text, never HTML.
"use strict";

function empty(list) {
  list.replaceChildren(element("li", "empty", T.nothing_yet));
}

// What the profile names by id: the workspace's lists and rules, read once.
const known = { lists: null, rules: null };

async function names() {
  if (known.lists === null) {
    const [lists, rules] = await Promise.all([api("GET", "/lists"), api("GET", "/rules").catch(() => [])]);
    known.lists = new Map(lists.map((list) => [list.id, list.name]));
    known.rules = new Map(rules.map((rule) => [rule.id, rule.name]));
  }
  return known;
}

async function search() {
  const query = new URLSearchParams({ limit: "50" });
  const text = $("search").value.trim();
  if (text) query.set("q", text);
  for (const tag of $("tag-filter").value.split(",").map((t) => t.trim()).filter(Boolean)) query.append("tag", tag);
  const page = await api("GET", "/contacts?" + query);
  const list = $("contact-list");
  list.replaceChildren();
  if (!page.items.length) {
    list.append(element("li", "empty", T.no_contacts));
    return;
  }
  for (const contact of page.items) {
    const item = element("li", "conversation contact");
    item.dataset.id = contact.id;
    item.append(element("span", "name", contact.name || contact.phone || contact.email));
    item.append(element("span", "preview", contact.phone || contact.email || ""));
    item.addEventListener("click", () => open(contact.id));
    list.append(item);
  }
}

function row(list, label, value) {
  list.append(element("dt", "", label), element("dd", "", value));
}

async function open(id) {
  const [contact, events, runs, traces, duplicates, conversations, { lists, rules }] = await Promise.all([
    api("GET", `/contacts/${id}`),
    api("GET", `/contacts/${id}/events?limit=100`),
    api("GET", `/contacts/${id}/rule-runs?limit=100`),
    api("GET", `/contacts/${id}/send-traces?limit=100`),
    api("GET", "/duplicates?limit=200").catch(() => ({ items: [] })),
    api("GET", `/conversations?contact_id=${id}&limit=5`),
    names(),
  ]);
  $("pick").hidden = true;
  $("detail").hidden = false;
  $("contacts").dataset.view = "thread";
  $("contact-name").textContent = contact.name || contact.phone || contact.email;
  $("contact-phone").textContent = [contact.phone, contact.email].filter(Boolean).join(" · ");

  const profile = $("profile");
  profile.replaceChildren();
  row(profile, T.tags, (contact.tags || []).join(", ") || "—");
  row(profile, T.lists_word, contact.list_ids.map((listId) => lists.get(listId) || `#${listId}`).join(", ") || "—");
  row(profile, T.lifecycle, contact.lifecycle_stage);
  row(profile, T.score, contact.score);
  row(profile, T.time_zone, contact.timezone || "—");
  row(profile, T.churn_risk, contact.churn_risk ? T.yes : T.no);
  for (const consent of contact.consents || []) {
    row(profile, `${T.consent} · ${consent.channel} · ${consent.purpose}`, consent.status);
  }
  for (const [key, value] of Object.entries(contact.custom_fields || {})) {
    row(profile, `${T.fields} · ${key}`, value);
  }

  // The "why" panel: rule evaluations and send decisions, newest first, each with its reason.
  const why = $("why");
  why.replaceChildren();
  const entries = [
    ...runs.map((r) => ({ at: r.created_at, kind: "rule", label: `${T.rule} ${rules.get(r.rule_id) || "#" + r.rule_id}`, outcome: r.status, reason: r.reason })),
    ...traces.map((t) => ({ at: t.at, kind: "send", label: `${T.sent_msg} #${t.message_id ?? "—"}`, outcome: t.outcome, reason: t.reason })),
  ].sort((a, b) => (a.at < b.at ? 1 : -1));
  if (!entries.length) empty(why);
  for (const entry of entries) {
    const item = element("li", `why ${entry.kind}`);
    item.dataset.outcome = entry.outcome;
    item.append(element("span", "what", entry.label));
    item.append(element("span", "outcome", T["outcome_" + entry.outcome] || T["status_" + entry.outcome] || entry.outcome));
    item.append(element("span", "reason", entry.reason));
    item.append(element("time", "muted", when(entry.at)));
    why.append(item);
  }

  // Events and messages together, newest first; a received message is both an event and a
  // message, so it is shown once, as the message.
  const threads = await Promise.all(
    conversations.items.slice(0, 3).map((c) => api("GET", `/conversations/${c.id}/messages?limit=50`)),
  );
  const history = [
    ...events.items
      .filter((event) => event.type !== "message.received")
      .map((event) => ({
        at: event.occurred_at,
        kind: "event",
        type: event.type,
        detail: event.properties.text || event.properties.tag || event.properties.intent || event.properties.keyword || "",
      })),
    ...threads.flatMap((thread) =>
      thread.items.map((message) => ({
        at: message.created_at,
        kind: `message ${message.direction}`,
        type: message.direction === "in" ? "message.received" : `message.${message.status}`,
        detail: message.text || `[${message.kind}]`,
      })),
    ),
  ].sort((a, b) => (a.at < b.at ? 1 : -1));
  const timeline = $("timeline");
  timeline.replaceChildren();
  if (!history.length) empty(timeline);
  for (const entry of history.slice(0, 150)) {
    const item = element("li", `event ${entry.kind}`);
    item.dataset.type = entry.type;
    item.append(element("span", "type", entry.type));
    item.append(element("span", "detail", entry.detail));
    item.append(element("time", "muted", when(entry.at)));
    timeline.append(item);
  }

  // Where the conversation with them is: straight to it in the inbox.
  const talks = $("conversations");
  talks.replaceChildren(
    ...conversations.items.map((conversation) => {
      const item = element("li");
      const link = element("a", "", `${T.open_conversation} · ${when(conversation.last_message_at)}`);
      link.href = `/app/inbox?conversation=${conversation.id}`;
      item.append(link);
      return item;
    }),
  );
  if (!conversations.items.length) empty(talks);

  const same = duplicates.items.filter((pair) => pair.first.id === id || pair.second.id === id);
  $("same").hidden = !same.length;
  const list = $("same-list");
  list.replaceChildren();
  for (const pair of same) {
    const other = pair.first.id === id ? pair.second : pair.first;
    const item = element("li", "duplicate");
    item.append(element("span", "name", other.name || other.phone));
    item.append(element("span", "reason", pair.reasons.join(" · ")));
    list.append(item);
  }
}

let typing = null;
$("search").addEventListener("input", () => {
  clearTimeout(typing);
  typing = setTimeout(search, 200);
});
$("back").addEventListener("click", () => {
  $("contacts").dataset.view = "list";
});
$("tag-filter").addEventListener("change", search);
search().then(() => {
  const wanted = new URLSearchParams(window.location.search).get("contact");
  if (wanted) open(wanted);
});
