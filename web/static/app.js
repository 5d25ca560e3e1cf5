// natter's web app: one module, no framework. It is a client of the
// public API (docs/protocol.md) like any other: REST for accounts,
// lists and history, one WebSocket for sends and events (long-poll when
// a WebSocket cannot open), the cursor kept in localStorage so that a
// reload or a reconnection resumes where it was: nothing missed, nothing
// twice (messages are kept by conversation and seq).

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

// ---- session and cursor, kept across reloads ----

const store = {
  get session() { try { return JSON.parse(localStorage.getItem("natter.session")); } catch { return null; } },
  set session(s) { s ? localStorage.setItem("natter.session", JSON.stringify(s)) : localStorage.removeItem("natter.session"); },
  cursorKey() { const s = store.session; return s ? `natter.cursor.${s.user_id}.${s.device_id}` : ""; },
  get cursor() { return localStorage.getItem(store.cursorKey()) || ""; },
  set cursor(c) { if (c) localStorage.setItem(store.cursorKey(), c); else localStorage.removeItem(store.cursorKey()); },
};

// ---- REST ----

class APIError extends Error {
  constructor(status, code, message) { super(message || code); this.status = status; this.code = code; }
}

let refreshing = null;

async function refresh() {
  const s = store.session;
  if (!s) throw new APIError(401, "unauthorized", "signed out");
  refreshing ??= (async () => {
    const r = await fetch("/v1/auth/refresh", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: s.refresh_token }) });
    const b = await r.json().catch(() => ({}));
    if (!r.ok) throw new APIError(r.status, b.error?.code, b.error?.message);
    store.session = { ...s, access_token: b.access_token, refresh_token: b.refresh_token };
  })().finally(() => { refreshing = null; });
  return refreshing;
}

async function api(method, path, body, retried) {
  const s = store.session;
  const headers = { "Content-Type": "application/json" };
  if (s) headers.Authorization = `Bearer ${s.access_token}`;
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const b = r.status === 204 ? {} : await r.json().catch(() => ({}));
  if (r.ok) return b;
  const code = b.error?.code, message = b.error?.message;
  if (r.status === 401 && code === "token_expired" && !retried) {
    await refresh();
    return api(method, path, body, true);
  }
  if (r.status === 401 && s) signOut();
  throw new APIError(r.status, code, message);
}

// ---- state ----

const state = {
  me: null,                 // {user_id, username, device_id}
  conversations: new Map(), // conversation_id -> summary
  messages: new Map(),      // conversation_id -> Map(seq -> message)
  pending: new Map(),       // client_message_id -> {conversation_id, content, server_ts}
  users: new Map(),         // user_id -> username
  presence: new Map(),      // user_id -> presence event
  typing: new Map(),        // conversation_id -> Map(user_id -> expiry ms)
  open: null,               // the open conversation_id
  group: null,              // the open group's answer
};

async function username(id) {
  if (!id) return "";
  if (state.users.has(id)) return state.users.get(id);
  try {
    const u = await api("GET", `/v1/users/${encodeURIComponent(id)}`);
    state.users.set(id, u.username);
    return u.username;
  } catch { return id.slice(-6); }
}

function convMessages(conv) {
  if (!state.messages.has(conv)) state.messages.set(conv, new Map());
  return state.messages.get(conv);
}

// A status only moves forward: sent -> delivered -> read.
const rank = { sent: 1, delivered: 2, read: 3 };
const forward = (a, b) => ((rank[b] || 0) > (rank[a] || 0) ? b : a);

function putMessage(m) {
  const msgs = convMessages(m.conversation_id);
  const old = msgs.get(m.seq);
  msgs.set(m.seq, { ...old, ...m, status: forward(old?.status, m.status || "sent") });
  if (m.client_message_id) state.pending.delete(m.client_message_id);
}

// ---- transport: WebSocket, else long-poll ----

// everSynced: a WebSocket worked in this page, so a failure is a network
// loss (retry it) rather than a proxy that cuts WebSockets (long-poll).
const link = { ws: null, mode: "ws", failures: 0, opened: false, everSynced: false, timer: null, polling: false, stopped: true };

function setLink(status) {
  $("link").className = "link " + status;
  $("link").title = { up: "connected", poll: "connected (long-poll)", "": "reconnecting…" }[status] ?? status;
}

function connect() {
  link.stopped = false;
  if (link.mode === "poll") return poll();
  const s = store.session;
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const q = new URLSearchParams({ access_token: s.access_token });
  if (store.cursor) q.set("cursor", store.cursor);
  const ws = new WebSocket(`${proto}//${location.host}/v1/ws?${q}`);
  link.ws = ws;
  link.opened = false;
  ws.onmessage = (e) => { try { handle(JSON.parse(e.data)); } catch (err) { console.error(err); } };
  ws.onclose = async (e) => {
    link.ws = null;
    setLink("");
    if (link.stopped) return;
    if (e.code === 4001) return signOut();
    if (e.code === 4002) { try { await refresh(); } catch { return signOut(); } }
    if (e.code === 4010) { store.cursor = ""; await loadConversations(); }
    if (!link.opened && ++link.failures >= 3 && !link.everSynced) {
      link.mode = "poll"; // the WebSocket cannot open here: long-poll
      return poll();
    }
    clearTimeout(link.timer);
    link.timer = setTimeout(connect, Math.min(500 * 2 ** link.failures, 10000));
  };
}

async function poll() {
  if (link.polling) return;
  link.polling = true;
  let delay = 0;
  try {
    while (!link.stopped) {
      try {
        const c = store.cursor;
        const r = await api("GET", `/v1/events?timeout=25${c ? `&cursor=${encodeURIComponent(c)}` : ""}`);
        setLink("poll");
        if (!c) { store.cursor = r.cursor; await loadConversations(); continue; }
        for (const ev of r.events) handle(ev);
        store.cursor = r.cursor;
        delay = 0;
      } catch (err) {
        if (err.code === "cursor_expired") { store.cursor = ""; continue; }
        setLink("");
        delay = Math.min(delay * 2 || 500, 10000);
        await new Promise((res) => setTimeout(res, delay));
      }
    }
  } finally { link.polling = false; }
}

function sendFrame(frame) {
  if (link.ws && link.ws.readyState === WebSocket.OPEN) {
    link.ws.send(JSON.stringify(frame));
    return true;
  }
  return false;
}

// ---- events ----

function handle(f) {
  switch (f.type) {
    case "synced":
      // A session counts as open once synced: a socket that opens and
      // closes before it (a proxy that cuts WebSockets) is a failure.
      link.opened = link.everSynced = true;
      link.failures = 0;
      setLink("up");
      if (!store.cursor) { store.cursor = f.cursor; loadConversations(); } else store.cursor = f.cursor;
      if (state.open) subscribePresence();
      return;
    case "ack":
      onAck(f);
      return;
    case "message":
      onMessage(f);
      break;
    case "receipt":
      onReceipt(f);
      break;
    case "deleted":
      onDeleted(f);
      break;
    case "group":
      loadConversations();
      if (state.group && state.group.group_id === f.group_id) loadGroup(f.group_id);
      break;
    case "typing":
      onTyping(f);
      return;
    case "presence":
      state.presence.set(f.user_id, f);
      renderHeader();
      return;
    case "error":
      $("chat-error").textContent = f.message || f.code;
      return;
    case "pong":
      return;
  }
  if (f.cursor) store.cursor = f.cursor; // processed: a reconnection starts after it
}

function onAck(a) {
  const p = state.pending.get(a.client_message_id);
  if (!p) return;
  putMessage({ message_id: a.message_id, conversation_id: a.conversation_id, seq: a.seq, sender_id: state.me.user_id,
    content: p.content, client_message_id: a.client_message_id, server_ts: a.server_ts, status: "sent" });
  touchConversation(a.conversation_id, p.content, a.server_ts, a.seq, true);
  render();
}

function onMessage(m) {
  const mine = m.sender_id === state.me.user_id;
  const known = convMessages(m.conversation_id).has(m.seq);
  putMessage({ ...m, status: mine ? "sent" : undefined });
  if (!known) touchConversation(m.conversation_id, m.content, m.server_ts, m.seq, mine);
  if (!mine) {
    const read = state.open === m.conversation_id && document.visibilityState === "visible";
    receipt(m.message_id, read ? "read" : "delivered");
    if (read) markRead(m.conversation_id, m.seq);
  }
  render();
}

function onReceipt(r) {
  if (r.user_id === state.me.user_id) { markRead(r.conversation_id, r.seq, r.status); render(); return; }
  // The peer (or, for a group, every member) reached r.status up to r.seq.
  for (const [seq, m] of convMessages(r.conversation_id)) {
    if (seq <= r.seq && m.sender_id === state.me.user_id) m.status = forward(m.status, r.status);
  }
  render();
}

function onDeleted(d) {
  const m = convMessages(d.conversation_id).get(d.seq);
  if (m) { m.deleted = true; m.content = ""; }
  render();
}

function onTyping(t) {
  if (t.user_id === state.me.user_id) return;
  if (!state.typing.has(t.conversation_id)) state.typing.set(t.conversation_id, new Map());
  const users = state.typing.get(t.conversation_id);
  if (t.state === "composing") users.set(t.user_id, Date.now() + 6000);
  else users.delete(t.user_id);
  renderTyping();
  if (!state.users.has(t.user_id)) username(t.user_id).then(renderTyping);
  setTimeout(renderTyping, 6100);
}

function touchConversation(id, preview, at, seq, mine) {
  let c = state.conversations.get(id);
  if (!c) { loadConversations(); return; }
  c.last_message_preview = preview;
  c.last_message_at = at;
  c.last_seq = Math.max(c.last_seq || 0, seq);
  if (!mine && state.open !== id) c.unread_count = (c.unread_count || 0) + 1;
}

function markRead(conv, seq, status = "read") {
  const c = state.conversations.get(conv);
  if (!c || status !== "read") return;
  c.last_read_seq = Math.max(c.last_read_seq || 0, seq);
  let unread = 0;
  for (const [s, m] of convMessages(conv)) if (s > c.last_read_seq && m.sender_id !== state.me.user_id) unread++;
  c.unread_count = unread;
}

function receipt(messageID, status) {
  if (!sendFrame({ type: "receipt", message_id: messageID, status })) {
    api("POST", `/v1/messages/${encodeURIComponent(messageID)}/status`, { status, timestamp: Date.now() }).catch(() => {});
  }
}

// ---- loading ----

async function loadConversations() {
  try {
    const all = [];
    let cursor = "";
    do {
      const page = await api("GET", `/v1/conversations?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
      all.push(...page.conversations);
      cursor = page.next_cursor;
    } while (cursor);
    for (const c of all) state.conversations.set(c.conversation_id, c);
    renderConversations();
  } catch (err) { $("sidebar-error").textContent = err.message; }
}

async function loadHistory(conv) {
  const page = await api("GET", `/v1/conversations/${encodeURIComponent(conv)}/messages?limit=100`);
  for (const m of page.messages) putMessage(m);
}

async function loadGroup(groupID) {
  try {
    state.group = await api("GET", `/v1/groups/${encodeURIComponent(groupID)}`);
    for (const m of state.group.members) await username(m.user_id);
  } catch (err) { state.group = null; $("chat-error").textContent = err.message; }
  renderGroup();
}

// ---- actions ----

async function openConversation(id) {
  state.open = id;
  state.group = null;
  $("chat-error").textContent = "";
  $("group-panel").hidden = true;
  $("app").classList.add("in-chat");
  $("chat").hidden = false;
  $("empty").hidden = true;
  const c = state.conversations.get(id);
  $("group-info").hidden = c?.type !== "group";
  renderConversations();
  render();
  try { await loadHistory(id); } catch (err) { $("chat-error").textContent = err.message; }
  if (c?.type === "group") loadGroup(c.group_id);
  subscribePresence();
  readVisible();
  render();
  $("composer-text").focus();
}

// readVisible marks the open conversation read up to its newest message
// from someone else (a status covers every earlier message).
function readVisible() {
  const conv = state.open;
  if (!conv || document.visibilityState !== "visible") return;
  const c = state.conversations.get(conv);
  let newest = null;
  for (const m of convMessages(conv).values()) {
    if (m.sender_id !== state.me.user_id && (!newest || m.seq > newest.seq)) newest = m;
  }
  if (newest && (!c || newest.seq > (c.last_read_seq || 0))) {
    receipt(newest.message_id, "read");
    markRead(conv, newest.seq);
    renderConversations();
  }
}

function subscribePresence() {
  const c = state.conversations.get(state.open);
  if (c?.type === "user" && c.peer_id && c.peer_id !== state.me.user_id) {
    if (!sendFrame({ type: "presence.subscribe", user_ids: [c.peer_id] })) {
      api("GET", `/v1/users/${encodeURIComponent(c.peer_id)}/presence`).then((p) => { state.presence.set(p.user_id, p); renderHeader(); }).catch(() => {});
    }
  }
}

async function send(text) {
  const c = state.conversations.get(state.open);
  if (!c || !text) return;
  const group = c.type === "group";
  const req = { client_message_id: crypto.randomUUID(), recipient_id: group ? c.group_id : c.peer_id,
    message_type: group ? "group" : "user", content: text, timestamp: Date.now() };
  state.pending.set(req.client_message_id, { conversation_id: c.conversation_id, content: text, server_ts: Date.now() });
  render();
  if (sendFrame({ type: "send", ...req })) return;
  // Long-poll mode: REST. A retry with the same client_message_id is the same message.
  for (let attempt = 0; attempt < 5; attempt++) {
    try { onAck(await api("POST", "/v1/messages", req)); return; } catch (err) {
      if (err.status && err.status < 500 && err.status !== 429) { $("chat-error").textContent = err.message; state.pending.delete(req.client_message_id); render(); return; }
      await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
    }
  }
}

let typingSent = 0;
function typing(stateName) {
  const conv = state.open;
  if (!conv) return;
  if (stateName === "composing" && Date.now() - typingSent < 3000) return; // a refresh every 3 s keeps it alive
  typingSent = stateName === "composing" ? Date.now() : 0;
  if (!sendFrame({ type: "typing", conversation_id: conv, state: stateName })) {
    api("POST", `/v1/conversations/${encodeURIComponent(conv)}/typing`, { state: stateName }).catch(() => {});
  }
}

async function startChat(name) {
  const u = await api("GET", `/v1/users/by-username/${encodeURIComponent(name)}`);
  state.users.set(u.user_id, u.username);
  const { conversation_id } = await api("POST", "/v1/conversations", { peer_id: u.user_id });
  await loadConversations();
  if (!state.conversations.has(conversation_id)) {
    state.conversations.set(conversation_id, { conversation_id, type: "user", peer_id: u.user_id, title: u.username, last_seq: 0, unread_count: 0 });
  }
  openConversation(conversation_id);
}

async function userIDs(names) {
  const ids = [];
  for (const n of names.split(",").map((s) => s.trim()).filter(Boolean)) {
    const u = await api("GET", `/v1/users/by-username/${encodeURIComponent(n)}`);
    state.users.set(u.user_id, u.username);
    ids.push(u.user_id);
  }
  return ids;
}

async function deleteMessage(m, scope) {
  try { await api("DELETE", `/v1/messages/${encodeURIComponent(m.message_id)}?for=${scope}`); } catch (err) { $("chat-error").textContent = err.message; }
}

// ---- rendering (textContent only: nothing a user wrote becomes HTML) ----

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");

function title(c) { return c.title || (c.peer_id ? state.users.get(c.peer_id) || "…" : "group"); }

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren();
  const all = [...state.conversations.values()].sort((a, b) => (b.last_message_at || 0) - (a.last_message_at || 0));
  for (const c of all) {
    if (!c.title && c.peer_id && !state.users.has(c.peer_id)) username(c.peer_id).then(renderConversations);
    const li = el("li", c.conversation_id === state.open ? "active" : "");
    li.dataset.conversation = c.conversation_id;
    const body = el("div", "body");
    body.append(el("div", "name", (c.type === "group" ? "👥 " : "") + title(c)), el("div", "preview", c.last_message_preview || ""));
    const meta = el("div", "meta", time(c.last_message_at));
    if (c.unread_count > 0) { meta.append(el("br")); meta.append(el("span", "unread", String(c.unread_count))); }
    li.append(body, meta);
    li.onclick = () => openConversation(c.conversation_id);
    list.append(li);
  }
}

function ticks(m) {
  if (!m.message_id) return el("span", "ticks", "🕓");
  const t = el("span", "ticks" + (m.status === "read" ? " read" : ""), m.status === "sent" ? "✓" : "✓✓");
  t.title = m.status;
  t.dataset.status = m.status;
  return t;
}

function render() {
  renderConversations();
  renderHeader();
  const conv = state.open;
  const list = $("messages");
  if (!conv) return;
  const c = state.conversations.get(conv);
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren();
  const msgs = [...convMessages(conv).values()].sort((a, b) => a.seq - b.seq);
  const sentIDs = new Set(msgs.map((m) => m.client_message_id).filter(Boolean));
  for (const [cmid, p] of state.pending) if (p.conversation_id === conv && !sentIDs.has(cmid)) msgs.push({ ...p, client_message_id: cmid, sender_id: state.me.user_id });
  for (const m of msgs) {
    const mine = m.sender_id === state.me.user_id;
    const li = el("li", "msg" + (mine ? " mine" : "") + (m.deleted ? " deleted" : ""));
    if (m.seq) li.dataset.seq = m.seq;
    if (c?.type === "group" && !mine) li.append(el("div", "sender", state.users.get(m.sender_id) || ""));
    li.append(el("div", "text", m.deleted ? "This message was deleted" : m.content));
    const foot = el("div", "foot");
    if (m.message_id && !m.deleted) {
      const actions = el("span", "actions");
      const forMe = el("button", "", "🗑");
      forMe.title = "Delete for me";
      forMe.onclick = () => deleteMessage(m, "me");
      actions.append(forMe);
      if (mine) {
        const forAll = el("button", "", "⊘");
        forAll.title = "Delete for everyone";
        forAll.onclick = () => deleteMessage(m, "everyone");
        actions.append(forAll);
      }
      foot.append(actions);
    }
    foot.append(el("span", "", time(m.server_ts)));
    if (mine && !m.deleted) foot.append(ticks(m));
    li.append(foot);
    list.append(li);
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
  renderTyping();
}

function renderHeader() {
  const c = state.conversations.get(state.open);
  if (!c) return;
  $("chat-title").textContent = title(c);
  let status = "";
  if (c.type === "group") status = state.group ? `${state.group.member_count} members` : "";
  else if (c.peer_id === state.me.user_id) status = "message yourself";
  else {
    const p = state.presence.get(c.peer_id);
    if (p?.status === "online") status = "online";
    else if (p?.last_seen) status = `last seen ${new Date(p.last_seen).toLocaleString([], { dateStyle: "short", timeStyle: "short" })}`;
  }
  $("chat-status").textContent = status;
}

function renderTyping() {
  const users = state.typing.get(state.open);
  const now = Date.now();
  const names = [];
  if (users) for (const [u, exp] of users) { if (exp > now) names.push(state.users.get(u) || "someone"); else users.delete(u); }
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

function renderGroup() {
  const g = state.group;
  const list = $("group-members");
  list.replaceChildren();
  if (!g) return;
  const meAdmin = g.members.some((m) => m.user_id === state.me.user_id && m.role === "admin");
  for (const m of g.members) {
    const li = el("li");
    li.append(el("span", "", `${state.users.get(m.user_id) || m.user_id} (${m.role})`));
    if (meAdmin && m.user_id !== state.me.user_id) {
      const role = el("button", "link-button", m.role === "admin" ? "make member" : "make admin");
      role.onclick = () => api("PATCH", `/v1/groups/${g.group_id}/members/${m.user_id}`, { role: m.role === "admin" ? "member" : "admin" }).then(() => loadGroup(g.group_id)).catch((e) => ($("chat-error").textContent = e.message));
      const rm = el("button", "link-button", "remove");
      rm.onclick = () => api("DELETE", `/v1/groups/${g.group_id}/members/${m.user_id}`).then(() => loadGroup(g.group_id)).catch((e) => ($("chat-error").textContent = e.message));
      li.append(role, rm);
    }
    if (m.user_id === state.me.user_id) {
      const leave = el("button", "link-button", "leave");
      leave.onclick = () => api("DELETE", `/v1/groups/${g.group_id}/members/${m.user_id}`).then(loadConversations).catch((e) => ($("chat-error").textContent = e.message));
      li.append(leave);
    }
    list.append(li);
  }
  $("group-add").hidden = $("group-rename").hidden = !meAdmin;
  renderHeader();
}

// ---- sign in and out ----

async function start() {
  const s = store.session;
  if (!s) { $("auth").hidden = false; $("app").hidden = true; return; }
  try {
    state.me = await api("GET", "/v1/me");
  } catch { return; }
  state.users.set(state.me.user_id, state.me.username);
  $("me").textContent = state.me.username;
  $("auth").hidden = true;
  $("app").hidden = false;
  await loadConversations();
  connect();
}

function signOut() {
  link.stopped = true;
  link.ws?.close();
  const s = store.session;
  if (s) api("DELETE", `/v1/me/devices/${s.device_id}`).catch(() => {});
  store.cursor = "";
  store.session = null;
  location.reload();
}

async function signIn(register) {
  const username = $("auth-username").value.trim(), password = $("auth-password").value;
  $("auth-error").textContent = "";
  try {
    if (register) await api("POST", "/v1/auth/register", { username, password });
    const l = await api("POST", "/v1/auth/login", { username, password, device_name: `web (${navigator.platform || "browser"})` });
    store.session = l;
    await start();
  } catch (err) {
    $("auth-error").textContent = err.code === "username_taken" ? "That username is taken." : err.status === 401 ? "Wrong username or password." : err.message;
  }
}

// ---- wiring ----

$("auth-form").onsubmit = (e) => { e.preventDefault(); signIn(false); };
$("sign-up").onclick = () => { if ($("auth-form").reportValidity()) signIn(true); };
$("sign-out").onclick = signOut;
$("back").onclick = () => { state.open = null; $("app").classList.remove("in-chat"); $("chat").hidden = true; $("empty").hidden = false; renderConversations(); };
$("new-chat").onsubmit = (e) => {
  e.preventDefault();
  const name = $("new-chat-username").value.trim();
  $("sidebar-error").textContent = "";
  if (name) startChat(name).then(() => ($("new-chat-username").value = "")).catch((err) => ($("sidebar-error").textContent = err.status === 404 ? `No user ${name}.` : err.message));
};
$("new-group").onsubmit = async (e) => {
  e.preventDefault();
  $("sidebar-error").textContent = "";
  try {
    const g = await api("POST", "/v1/groups", { name: $("new-group-name").value.trim(), member_ids: await userIDs($("new-group-members").value) });
    $("new-group-name").value = $("new-group-members").value = "";
    await loadConversations();
    if (!state.conversations.has(g.conversation_id)) { // listed once it has a message
      state.conversations.set(g.conversation_id, { conversation_id: g.conversation_id, type: "group", group_id: g.group_id, title: g.name, last_seq: 0, unread_count: 0 });
    }
    openConversation(g.conversation_id);
  } catch (err) { $("sidebar-error").textContent = err.message; }
};
$("group-info").onclick = () => { $("group-panel").hidden = !$("group-panel").hidden; };
$("group-add").onsubmit = async (e) => {
  e.preventDefault();
  try {
    await api("POST", `/v1/groups/${state.group.group_id}/members`, { user_ids: await userIDs($("group-add-username").value) });
    $("group-add-username").value = "";
    loadGroup(state.group.group_id);
  } catch (err) { $("chat-error").textContent = err.message; }
};
$("group-rename").onsubmit = async (e) => {
  e.preventDefault();
  try {
    await api("PATCH", `/v1/groups/${state.group.group_id}`, { name: $("group-rename-name").value.trim() });
    $("group-rename-name").value = "";
    await loadConversations();
    loadGroup(state.group.group_id);
  } catch (err) { $("chat-error").textContent = err.message; }
};
$("composer").onsubmit = (e) => {
  e.preventDefault();
  const text = $("composer-text").value;
  $("composer-text").value = "";
  typing("paused");
  send(text);
};
$("composer-text").oninput = () => typing($("composer-text").value ? "composing" : "paused");
document.addEventListener("visibilitychange", readVisible);
window.addEventListener("online", () => { if (!link.ws && link.mode === "ws" && !link.stopped) { clearTimeout(link.timer); connect(); } });
setInterval(() => sendFrame({ type: "ping" }), 20000);

start();
