// NEMO monitor dashboard: renders the board and the feed from the SSE stream.
// Everything is inserted with textContent (never innerHTML): names come from users.
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var token = params.get("token");
  var query = token ? "?token=" + encodeURIComponent(token) : "";
  var FEED_MAX = 200;
  // ?close_after=N: stop listening after N live updates. For screenshots and the
  // headless browser test (a page with an open stream never finishes loading).
  var closeAfter = Number(params.get("close_after")) || 0;
  var liveUpdates = 0;
  var lastSeq = 0;
  var tools = {};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  // "14:02 (9 min)" today; "16 Oct (46 d)" on another day ("16 Oct 2024" in another year);
  // "~" in front when the time is when the monitor received the message (the event had none).
  // "9 min" since an ISO time.
  function age(d, now) {
    var s = Math.max(0, Math.floor((now.getTime() - d.getTime()) / 1000));
    var days = Math.floor(s / 86400), h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
    return days > 0 ? days + " d" : h > 0 ? h + " h " + m + " min" : m > 0 ? m + " min" : s + " s";
  }
  function since(iso, received) {
    if (!iso) return "";
    var d = new Date(iso);
    if (isNaN(d)) return "";
    var now = new Date();
    var ago = age(d, now);
    var when;
    if (d.toDateString() === now.toDateString()) {
      when = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
    } else if (d.getFullYear() === now.getFullYear()) {
      when = d.toLocaleDateString([], {day: "numeric", month: "short"});
    } else {
      when = d.toLocaleDateString([], {day: "numeric", month: "short", year: "numeric"});
    }
    return (received ? "~" : "") + when + " (" + ago + ")";
  }
  function renderTool(t) {
    tools[t.id] = t;
    var card = document.getElementById("tool-" + t.id);
    if (!card) {
      card = el("div");
      card.id = "tool-" + t.id;
      var board = document.getElementById("board");
      var ids = Object.keys(tools).sort(function (a, b) { return (Number(a) - Number(b)) || (a < b ? -1 : 1); });
      var next = ids[ids.indexOf(String(t.id)) + 1];
      var before = next !== undefined ? document.getElementById("tool-" + next) : null;
      board.insertBefore(card, before);
      var empty = document.getElementById("empty");
      if (empty) empty.remove();
    }
    card.className = "card " + t.status;
    card.replaceChildren();
    var name = el("div", "name", t.name || "tool");
    name.appendChild(el("span", "id", " #" + t.id));
    card.appendChild(name);
    var state, detail;
    if (t.status === "down") {
      state = "DOWN"; detail = "since " + since(t.down_since, t.down_since_received);
    } else if (t.status === "in_use") {
      state = "IN USE"; detail = (t.in_use ? t.in_use.user : "?") + ", since " + since(t.in_use && t.in_use.since, t.in_use && t.in_use.since_received);
    } else {
      state = "IDLE"; detail = t.last_user ? "last: " + t.last_user : "";
      // Idle since the last usage ended (its end_time), not since the monitor heard of it.
      var idle = since(t.idle_since, t.idle_since_received);
      if (idle) detail += (detail ? ", " : "") + "idle since " + idle;
    }
    card.appendChild(el("div", "state", state));
    card.appendChild(el("div", "detail", detail));
    if (t.open_tasks && t.open_tasks.length) {
      var last = t.open_tasks[t.open_tasks.length - 1];
      card.appendChild(el("div", "tasks", t.open_tasks.length + " open task" +
        (t.open_tasks.length > 1 ? "s" : "") + ": " + (last.description || "#" + last.task_id)));
    }
  }
  // The bridge's queue figures as it published them (verified when the monitor has a key).
  function queueText(q) {
    var t = "queue (" + q.source + "): " + q.pending + " pending · " + q.processing +
      " in processing · " + q.dead + " dead";
    if (q.display_connected === true) t += " · displays' broker connected";
    if (q.display_connected === false) t += " · displays' broker NOT connected";
    var d = new Date(q.at);
    if (!isNaN(d)) t += " (" + age(d, new Date()) + " old)";
    return t;
  }
  function renderBridge(b, q, r) {
    var text = "bridge: " + (b ? String(b.state).toUpperCase() + (b.since ? " since " + (since(b.since) || b.since) : "") : "no status seen");
    if (q) text += " | " + queueText(q);
    else if (!r) text += " | queue: no figures seen";
    if (r) text += " | queue figures NOT VERIFIED, ignored";
    document.getElementById("bridge").textContent = text;
  }
  var bridge = null, queue = null, rejected = null;
  // The figures' age counts up between documents.
  setInterval(function () { renderBridge(bridge, queue, rejected); }, 1000);
  function addFeed(item) {
    var li = el("li", item.class);
    li.dataset.seq = item.seq;
    li.appendChild(el("span", "time", item.time + "  "));
    li.appendChild(el("span", "subject", item.subject + "  "));
    li.appendChild(el("span", "what", item.what));
    if (item.tags && item.tags.length) li.appendChild(el("span", "tags", "  " + item.tags.join(" ")));
    var feed = document.getElementById("feed");
    feed.insertBefore(li, feed.firstChild);
    while (feed.children.length > FEED_MAX) feed.removeChild(feed.lastChild);
  }
  function snapshot(s) {
    document.getElementById("feed").replaceChildren();
    (s.tools || []).forEach(renderTool);
    (s.feed || []).forEach(addFeed);
    bridge = s.bridge; queue = s.queue; rejected = s.queue_rejected;
    renderBridge(bridge, queue, rejected);
    lastSeq = s.seq || 0;
  }
  function update(u) {
    if ("queue_rejected" in u) { queue = u.queue || queue; rejected = u.queue_rejected; renderBridge(bridge, queue, rejected); }
    if (!u.feed) return;
    if (u.seq <= lastSeq) return;
    lastSeq = u.seq;
    if (u.tool) renderTool(u.tool);
    if (u.bridge) { bridge = u.bridge; renderBridge(bridge, queue, rejected); }
    addFeed(u.feed);
    liveUpdates += 1;
    if (closeAfter && liveUpdates >= closeAfter) {
      es.close();
      conn.textContent = "stopped after " + liveUpdates + " live update" + (liveUpdates > 1 ? "s" : "");
      conn.className = "conn";
    }
  }
  var conn = document.getElementById("conn");
  var es = new EventSource("events" + query);
  es.addEventListener("open", function () { conn.textContent = "live"; conn.className = "conn live"; });
  es.addEventListener("error", function () { conn.textContent = "connection lost, retrying…"; conn.className = "conn lost"; });
  es.addEventListener("snapshot", function (e) { snapshot(JSON.parse(e.data)); });
  es.addEventListener("update", function (e) { update(JSON.parse(e.data)); });
})();
