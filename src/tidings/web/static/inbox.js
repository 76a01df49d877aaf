// The agents' inbox: a client of the JSON API (session cookie + CSRF header), refreshed
// live by the server's change feed. Everything shown is set as text, never as HTML.
"use strict";

const ME = Number(document.querySelector(".user").dataset.userId);

const state = {
  filter: "all",
  status: "open",
  team: "",
  number: "",
  label: "",
  current: null,
  conversation: null,
  replies: null,
  agents: [],
  teams: [],
  drawing: 0, // the latest redraw of the thread asked for
};

// --- the conversation list ------------------------------------------------------------------

async function loadList() {
  const query = new URLSearchParams({ limit: "100" });
  if (state.status) query.set("status", state.status);
  if (state.filter === "mine") query.set("assignee_id", String(ME));
  if (state.filter === "unassigned") query.set("unassigned", "true");
  if (state.team) query.set("team_id", state.team);
  if (state.number) query.set("number_id", state.number);
  if (state.label) query.set("label", state.label);
  const page = await api("GET", "/conversations?" + query);
  const list = $("conversation-list");
  list.replaceChildren(...page.items.map(listItem));
  $("empty-list").hidden = page.items.length > 0;
}

function listItem(conversation) {
  const item = element("li", "conversation");
  item.dataset.id = conversation.id;
  if (conversation.id === state.current) item.setAttribute("aria-current", "true");
  const name = conversation.contact_name || conversation.contact_phone || "#" + conversation.contact_id;
  const head = element("div", "row");
  head.append(element("strong", "name", name), element("span", "time", when(conversation.last_message_at, false)));
  item.append(head);
  const foot = element("div", "row");
  const labels = element("span", "labels");
  for (const label of conversation.labels) labels.append(element("span", "label", label));
  foot.append(labels);
  if (conversation.unread_count > 0) foot.append(element("span", "unread", String(conversation.unread_count)));
  item.append(foot);
  item.addEventListener("click", () => openConversation(conversation.id));
  return item;
}

// --- one conversation -----------------------------------------------------------------------

async function openConversation(id) {
  const changed = state.current !== id;
  state.current = id;
  $("inbox").dataset.view = "thread";
  if (changed) {
    $("composer-error").hidden = true;
    $("reply").value = "";
  }
  await showConversation();
  if (state.conversation && state.conversation.unread_count > 0) {
    await api("POST", `/conversations/${id}/seen`, {});
  }
  await loadList();
}

async function showConversation() {
  const id = state.current;
  if (id === null) return;
  // The live feed and the composer both redraw the thread; an answer that arrives after a
  // newer one must not paint the older state over it.
  const ticket = (state.drawing = (state.drawing || 0) + 1);
  const [conversation, thread] = await Promise.all([
    api("GET", `/conversations/${id}`),
    api("GET", `/conversations/${id}/messages?limit=100`),
  ]);
  if (state.current !== id || ticket !== state.drawing) return;
  state.conversation = conversation;
  $("no-thread").hidden = true;
  $("thread").hidden = false;
  $("thread-name").textContent = conversation.contact_name || conversation.contact_phone || "";
  $("thread-phone").textContent = conversation.contact_name ? conversation.contact_phone || "" : "";
  $("toggle-status").textContent = conversation.status === "resolved" ? T.reopen : T.resolve;
  $("assign-me").hidden = conversation.assignee_id === ME;
  drawAssignee(conversation);
  drawLabels(conversation);
  $("snoozed").textContent =
    conversation.status === "snoozed" && conversation.snoozed_until
      ? T.snoozed_until.replace("{time}", when(conversation.snoozed_until))
      : "";
  await drawNotes(id);
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...thread.items.slice().reverse().map(messageItem));
  if (atBottom || list.dataset.conversation !== String(id)) list.scrollTop = list.scrollHeight;
  list.dataset.conversation = String(id);
  await showWindow(conversation);
}

function messageText(message) {
  const content = message.content || {};
  const kind = message.kind || content.type;
  if (message.text) return message.text;
  if (kind === "template" && content.template) return "📄 " + content.template.name;
  if (kind === "location" && content.location) {
    const place = content.location;
    return "📍 " + (place.name || "") + " " + place.latitude + ", " + place.longitude;
  }
  if (kind === "interactive" && content.interactive) {
    const reply = content.interactive.button_reply || content.interactive.list_reply || {};
    return "↩ " + (reply.title || "");
  }
  if (["image", "video", "audio", "document", "sticker"].includes(kind)) {
    const media = content[kind] || {};
    return "📎 " + kind + (media.caption ? ": " + media.caption : "");
  }
  return "[" + kind + "]";
}

function messageItem(message) {
  const item = element("li", "message " + (message.direction === "in" ? "in" : "out"));
  item.dataset.id = message.id;
  if (message.kind === "image" && message.direction === "in") {
    const image = element("img", "media");
    image.src = `/api/v1/messages/${message.id}/media`;
    image.alt = messageText(message);
    image.loading = "lazy";
    item.append(image);
  } else if (["document", "video", "audio"].includes(message.kind) && message.direction === "in") {
    // Downloaded, never opened in the app's origin: the server sends it as an attachment.
    const file = element("a", "attachment", T.download_attachment);
    file.href = `/api/v1/messages/${message.id}/media`;
    file.setAttribute("download", "");
    item.append(file);
  }
  item.append(element("div", "text", messageText(message)));
  const meta = element("div", "meta", when(message.created_at || message.sent_at));
  if (message.direction === "out") {
    const tick = element("span", "tick");
    tick.dataset.status = message.status;
    tick.textContent = { sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" }[message.status] || "…";
    const label = T["status_" + message.status] || message.status;
    const reason = message.error_title || message.status_reason;
    tick.title = reason ? label + " — " + reason : label;
    tick.setAttribute("aria-label", tick.title);
    meta.append(tick);
    if (message.status === "failed" && reason) meta.append(element("span", "reason", reason));
  }
  item.append(meta);
  return item;
}

async function showWindow(conversation) {
  const box = $("window");
  const open = conversation.window_open;
  box.dataset.open = String(open);
  box.textContent = open
    ? T.window_open_until.replace("{time}", when(conversation.window_closes_at))
    : T.window_closed;
  $("composer").hidden = !open;
  $("template-form").hidden = open;
  if (!open) await loadTemplates(conversation.number_id);
}

async function loadTemplates(numberId) {
  const templates = await api("GET", `/templates?number_id=${numberId}`);
  const select = $("template-select");
  const approved = templates.filter((t) => t.status === "approved");
  const chosen = select.value;
  select.replaceChildren(
    ...approved.map((t) => {
      const option = element("option", "", `${t.name} (${t.language})`);
      option.value = JSON.stringify({ name: t.name, language: t.language, body: bodyText(t) });
      return option;
    }),
  );
  if (chosen && [...select.options].some((option) => option.value === chosen)) select.value = chosen;
  else drawParameters();
}

// One input per {{n}} of the template's body, shown with the body's words around it.
function drawParameters() {
  const box = $("template-parameters");
  box.replaceChildren();
  if (!$("template-select").value) return;
  const { body } = JSON.parse($("template-select").value);
  const count = placeholderCount(body);
  if (body) box.append(element("p", "muted template-body", body));
  for (let n = 1; n <= count; n += 1) {
    const input = element("input");
    input.name = `parameter-${n}`;
    input.required = true;
    input.placeholder = T.parameter.replace("{n}", n);
    input.setAttribute("aria-label", input.placeholder);
    box.append(input);
  }
}

function templateContent() {
  const { name, language } = JSON.parse($("template-select").value);
  const template = { name, language: { code: language } };
  const values = [...$("template-parameters").querySelectorAll("input")].map((input) => input.value.trim());
  if (values.length) {
    template.components = [{ type: "body", parameters: values.map((text) => ({ type: "text", text })) }];
  }
  return { type: "template", template };
}

// A file goes to WhatsApp first (checked against its types and sizes), then out by its id,
// with the reply box's text as the caption where WhatsApp allows one.
async function attach(event) {
  const file = event.target.files[0];
  event.target.value = "";
  if (!file) return;
  $("composer-error").hidden = true;
  try {
    const media = await upload(`/whatsapp-numbers/${state.conversation.number_id}/media`, file);
    const body = { id: media.id };
    const caption = $("reply").value.trim();
    if (caption && media.kind !== "audio") body.caption = caption;
    if (media.kind === "document") body.filename = file.name;
    await send({ content: { type: media.kind, [media.kind]: body } });
  } catch (error) {
    showError($("composer-error"), error);
  }
}

// --- who works on what -----------------------------------------------------------------------

// Teams and numbers to filter by (shown when there is a choice), agents and teams to assign to.
async function loadPeople() {
  const [agents, teams, numbers] = await Promise.all([
    api("GET", "/agents"),
    api("GET", "/teams"),
    api("GET", "/whatsapp-numbers"),
  ]);
  state.agents = agents.filter((agent) => agent.is_active);
  state.teams = teams;
  fillFilter($("team-filter"), teams.map((team) => [team.id, team.name]));
  fillFilter($("number-filter"), numbers.map((n) => [n.id, `${n.name} ${n.display_phone_number}`]), 2);
}

function fillFilter(select, choices, atLeast = 1) {
  select.hidden = choices.length < atLeast;
  select.replaceChildren(select.options[0]);
  for (const [value, label] of choices) {
    const option = element("option", "", label);
    option.value = value;
    select.append(option);
  }
}

function drawAssignee(conversation) {
  const select = $("assign-to");
  const chosen = conversation.assignee_id ? `agent:${conversation.assignee_id}` : conversation.team_id ? `team:${conversation.team_id}` : "";
  const nobody = element("option", "", T.nobody);
  nobody.value = "";
  const options = [nobody];
  for (const agent of state.agents) {
    const option = element("option", "", agent.name);
    option.value = `agent:${agent.id}`;
    options.push(option);
  }
  for (const team of state.teams) {
    const option = element("option", "", `${T.team}: ${team.name}`);
    option.value = `team:${team.id}`;
    options.push(option);
  }
  select.replaceChildren(...options);
  select.value = chosen;
}

async function assignTo(event) {
  const [kind, id] = event.target.value.split(":");
  // An agent keeps the conversation's team; a team takes it back from any one agent.
  const body =
    kind === "agent"
      ? { assignee_id: Number(id) }
      : kind === "team"
        ? { team_id: Number(id), assignee_id: null }
        : { assignee_id: null, team_id: null };
  $("composer-error").hidden = true;
  try {
    await api("POST", `/conversations/${state.current}/assign`, body);
  } catch (error) {
    showError($("composer-error"), error);
  }
  await showConversation();
  await loadList();
}

// --- labels, snooze, notes ------------------------------------------------------------------

function drawLabels(conversation) {
  const box = $("thread-labels");
  box.replaceChildren(
    ...conversation.labels.map((label) => {
      const chip = element("span", "label", label + " ");
      chip.dataset.label = label;
      const remove = button("×", async () => {
        await api("DELETE", `/conversations/${state.current}/labels/${encodeURIComponent(label)}`);
        await showConversation();
        await loadList();
      }, "link");
      remove.setAttribute("aria-label", `${T.remove} ${label}`);
      chip.append(remove);
      return chip;
    }),
  );
}

async function addLabel(event) {
  event.preventDefault();
  const label = $("new-label").value.trim();
  if (!label) return;
  $("composer-error").hidden = true;
  try {
    await api("POST", `/conversations/${state.current}/labels`, { labels: [label] });
    $("new-label").value = "";
    await showConversation();
    await loadList();
  } catch (error) {
    showError($("composer-error"), error);
  }
}

function snoozeUntil(choice) {
  const until = new Date();
  if (choice === "hour") until.setHours(until.getHours() + 1);
  else {
    until.setDate(until.getDate() + (choice === "week" ? ((8 - until.getDay()) % 7 || 7) : 1));
    until.setHours(9, 0, 0, 0);
  }
  return until.toISOString();
}

async function snooze(event) {
  const choice = event.target.value;
  event.target.value = "";
  if (!choice) return;
  await api("POST", `/conversations/${state.current}/snooze`, { until: snoozeUntil(choice) });
  await showConversation();
  await loadList();
}

async function drawNotes(id) {
  const notes = await api("GET", `/conversations/${id}/notes`);
  if (state.current !== id) return;
  $("note-count").textContent = String(notes.length);
  $("note-list").replaceChildren(
    ...notes.map((note) => {
      const item = element("li", "note");
      item.append(element("span", "meta", `${note.author_label} · ${when(note.created_at)}`), element("p", "", note.body));
      return item;
    }),
  );
}

async function addNote(event) {
  event.preventDefault();
  const body = $("note-body").value.trim();
  if (!body) return;
  await api("POST", `/conversations/${state.current}/notes`, { body });
  $("note-body").value = "";
  await drawNotes(state.current);
}

// --- composing ------------------------------------------------------------------------------

async function send(body) {
  $("composer-error").hidden = true;
  try {
    await api("POST", `/conversations/${state.current}/messages`, body);
    $("reply").value = "";
    hideQuickReplies();
    await showConversation();
  } catch (error) {
    showError($("composer-error"), error);
  }
}

async function quickReplies() {
  if (state.replies === null) state.replies = await api("GET", "/quick-replies");
  return state.replies;
}

function hideQuickReplies() {
  $("quick-replies").hidden = true;
}

async function offerQuickReplies() {
  const typed = $("reply").value;
  if (!typed.startsWith("/")) return hideQuickReplies();
  const wanted = typed.slice(1).toLowerCase();
  const found = (await quickReplies()).filter(
    (r) => r.shortcut.toLowerCase().startsWith(wanted) || r.title.toLowerCase().includes(wanted),
  );
  const box = $("quick-replies");
  box.replaceChildren(
    ...found.map((reply, index) => {
      const option = element("button", "quick-reply");
      option.type = "button";
      option.setAttribute("role", "option");
      option.dataset.shortcut = reply.shortcut;
      if (index === 0) option.setAttribute("aria-selected", "true");
      option.append(element("strong", "", "/" + reply.shortcut), element("span", "", " " + reply.title));
      option.addEventListener("click", () => pickQuickReply(reply.shortcut));
      return option;
    }),
  );
  box.hidden = found.length === 0;
}

async function pickQuickReply(shortcut) {
  const rendered = await api(
    "GET",
    `/conversations/${state.current}/quick-replies/${encodeURIComponent(shortcut)}`,
  );
  $("reply").value = rendered.text;
  hideQuickReplies();
  $("reply").focus();
}

// --- wiring ---------------------------------------------------------------------------------

function wire() {
  for (const button of document.querySelectorAll("[data-filter]")) {
    button.addEventListener("click", () => {
      state.filter = button.dataset.filter;
      for (const other of document.querySelectorAll("[data-filter]")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      loadList();
    });
  }
  $("status-filter").addEventListener("change", (event) => {
    state.status = event.target.value;
    loadList();
  });
  $("team-filter").addEventListener("change", (event) => {
    state.team = event.target.value;
    loadList();
  });
  $("number-filter").addEventListener("change", (event) => {
    state.number = event.target.value;
    loadList();
  });
  $("label-filter").addEventListener("change", (event) => {
    state.label = event.target.value.trim();
    loadList();
  });
  $("assign-to").addEventListener("change", assignTo);
  $("back").addEventListener("click", () => {
    $("inbox").dataset.view = "list";
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("reply").value.trim();
    if (text && !text.startsWith("/")) send({ text });
  });
  $("reply").addEventListener("input", offerQuickReplies);
  $("reply").addEventListener("keydown", (event) => {
    const picked = $("quick-replies").querySelector('[aria-selected="true"]');
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      if (!$("quick-replies").hidden && picked) pickQuickReply(picked.dataset.shortcut);
      else $("composer").requestSubmit();
    } else if (event.key === "Escape") {
      hideQuickReplies();
    }
  });
  $("template-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!$("template-select").value) return;
    send({ content: templateContent() });
  });
  $("template-select").addEventListener("change", drawParameters);
  $("label-form").addEventListener("submit", addLabel);
  $("attach").addEventListener("change", attach);
  $("snooze").addEventListener("change", snooze);
  $("note-form").addEventListener("submit", addNote);
  $("assign-me").addEventListener("click", async () => {
    await api("POST", `/conversations/${state.current}/assign`, { assignee_id: ME });
    await showConversation();
  });
  $("toggle-status").addEventListener("click", async () => {
    const action = state.conversation.status === "resolved" ? "reopen" : "resolve";
    await api("POST", `/conversations/${state.current}/${action}`, {});
    await showConversation();
    await loadList();
  });
}

function listen() {
  const live = $("live");
  const feed = new EventSource("/app/stream");
  feed.addEventListener("open", () => {
    live.dataset.state = "live";
    live.textContent = T.live;
  });
  feed.addEventListener("error", () => {
    live.dataset.state = "offline";
    live.textContent = T.offline;
  });
  feed.addEventListener("change", async () => {
    if (state.current !== null) {
      await showConversation();
      await seeOpenConversation();
    }
    await loadList();
  });
  // Messages that came while the tab was hidden are seen once the agent looks again.
  document.addEventListener("visibilitychange", async () => {
    if (await seeOpenConversation()) await loadList();
  });
}

// The open conversation's new messages are read by the agent looking at it: its unread count
// goes back to zero, as it does on opening, instead of counting up under their eyes.
async function seeOpenConversation() {
  const open = state.conversation;
  if (document.visibilityState !== "visible" || !open || open.id !== state.current) return false;
  if (!(open.unread_count > 0)) return false;
  await api("POST", `/conversations/${open.id}/seen`, {});
  open.unread_count = 0;
  return true;
}

wire();
loadPeople()
  .then(loadList)
  .then(() => {
    const wanted = new URLSearchParams(window.location.search).get("conversation");
    if (wanted) openConversation(Number(wanted));
  });
listen();
