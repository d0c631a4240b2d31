// The dashboard's behaviour: commands go to the HTTP API, changes come back over the feed.
// Nothing is changed optimistically except a checkbox, which is put back if its command fails.
"use strict";
(() => {
  const body = document.body;
  const $ = (selector) => document.querySelector(selector);
  const SQL_ROWS_SHOWN = 200;
  const ERROR_FALLBACK = "The gateway is not reachable; check that `ironstar up` runs and try again.";

  // --- connection state --------------------------------------------------------------
  const connection = $("#connection");
  let state = "connecting";
  let noClient = false; // the official bundle did not load: nothing is applied
  function show(text, kind) {
    if (noClient) return;
    connection.textContent = text;
    connection.className = `conn conn-${kind}`;
  }
  function setState(next) {
    state = next;
    show(next === "live" ? "live" : "reconnecting…", next === "live" ? "live" : "reconnecting");
  }

  // Lag: each event says how many more its consumer held when it was delivered.
  const LAGGING_AT = 10;
  function showLag(behind) {
    if (state !== "live") return;
    if (behind >= LAGGING_AT) show(`lagging: ${behind} behind`, "lagging");
    else if (behind === 0) show("live", "live");
  }

  // --- fragments the feed does not carry --------------------------------------------
  async function reload(url, selector) {
    try {
      const reply = await fetch(url, { cache: "no-store" });
      if (!reply.ok) return;
      const template = document.createElement("template");
      template.innerHTML = await reply.text();
      $(selector)?.replaceWith(template.content);
    } catch (_) { /* the next event or interval tries again */ }
  }
  // After a feed snapshot every app panel is fetched again as it is now.
  function reloadPanels() {
    for (const panel of document.querySelectorAll("[data-panel]")) {
      const name = panel.dataset.panel;
      reload(`/ui/panels/${encodeURIComponent(name)}${location.search}`, `[data-panel="${CSS.escape(name)}"]`);
    }
  }
  // --- the feed ---------------------------------------------------------------------
  // Each message is applied by whichever Datastar client the page loaded: the built-in
  // datastar-lite.js, or the official bundle, which applies the `datastar-fetch` events its
  // own @get dispatches for each SSE message (type, and the data lines keyed by their first
  // word). The page's own reactions (reload after a snapshot, lag, log cap)
  // come from the same messages, not from either client's signal event.
  const EVENTS_KEPT = 50;
  function fields(data) {
    const lines = {};
    for (const line of data.split("\n")) {
      const cut = line.indexOf(" ");
      const key = cut < 0 ? line : line.slice(0, cut);
      (lines[key] ||= []).push(cut < 0 ? "" : line.slice(cut + 1));
    }
    return Object.fromEntries(Object.entries(lines).map(([k, v]) => [k, v.join("\n")]));
  }
  const official = body.dataset.mode !== "lite";
  // The feed carries every followed aggregate's patches, some for elements this page does
  // not show (another list's todos, when the caller may follow all lists for the log and the
  // list panel). Those are dropped here, so both clients do the same (the built-in one
  // patched nothing, the official one warned PatchElementsNoTargetsFound each time).
  function onPage(args) {
    if (args.selector === undefined) return true; // targets by the elements' own ids
    try { return document.querySelector(args.selector) !== null; } catch (_) { return false; }
  }
  function patch(type, data) {
    const args = fields(data);
    if (type === "datastar-patch-elements" && !onPage(args)) return;
    if (!official && window.datastarLite) {
      window.datastarLite.apply(type, data);
    } else {
      const detail = { type, el: document.documentElement, argsRaw: args };
      heard = false;
      document.dispatchEvent(new CustomEvent("datastar-fetch", { detail }));
      if (type === "datastar-patch-signals" && newSeq(args) && !heard) missingClient();
    }
  }
  // The official bundle answers a changed signal with `datastar-signal-patch` at once; a new
  // `seq` without one means no bundle runs (it did not load: a wrong URL, CORS, a blocked
  // address), so the page says so instead of "live" while applying nothing.
  let heard = false;
  let seqSent;
  function newSeq(args) {
    let seq;
    try { seq = JSON.parse(args.signals || "{}").seq; } catch (_) { return false; }
    if (seq === undefined || seq === seqSent) return false;
    seqSent = seq;
    return true;
  }
  function missingClient() {
    show("not updating: the Datastar bundle did not load (see the console)", "error");
    noClient = true;
  }
  // A bundle whose script did not load is known before any event (bundle-watch.js).
  if (official) {
    if (document.documentElement.dataset.datastar === "failed") missingClient();
    document.addEventListener("ironstar-datastar-failed", missingClient);
  }
  let snapshotSeen = null;
  function react(signals) {
    if (!signals || typeof signals !== "object") return;
    if ("snapshot" in signals && signals.snapshot !== snapshotSeen) {
      snapshotSeen = signals.snapshot;
      reloadPanels();
    }
    if ("behind" in signals) showLag(signals.behind);
  }
  // Signals patched by any other feed on the page: the built-in client says
  // `datastar-signals`, the official bundle `datastar-signal-patch` (only for values that
  // changed). The shared feed's own messages are reacted to below, once, whatever the client.
  document.addEventListener("datastar-signals", (event) => react(event.detail));
  document.addEventListener("datastar-signal-patch", (event) => { heard = true; react(event.detail); });
  function apply(messages) {
    for (const { type, data } of messages) {
      patch(type, data);
      if (type === "datastar-patch-signals") {
        try { react(JSON.parse(fields(data).signals || "{}")); } catch (_) { /* not ours */ }
      }
    }
    const log = $("#events");
    while (log && log.children.length > EVENTS_KEPT) log.lastElementChild.remove();
  }

  const feed = new URL(body.dataset.feed, location.href);
  const since = feed.searchParams.get("last_event_id");
  window.ironstarFeed.follow(feed, since, apply, setState);

  // Parts kept current by a live query (the chart, the totals, an app's `data-live` parts):
  // each answer is one element patch, applied by the same client as the feed's. Only the
  // views the caller's grants cover (`data-views`): a refused feed would be retried forever.
  const granted = new Set(body.dataset.views.split(" "));
  const view = (url) => new URL(url, location.href).pathname.replace(/^\/ui\/live\//, "");
  const views = new Set([...document.querySelectorAll("[data-live]")].map((el) => el.dataset.live)
    .filter((url) => granted.has(view(url))));
  for (const url of views) {
    window.ironstarFeed.latest(url, since, (messages) => {
      for (const { type, data } of messages) patch(type, data);
    });
  }

  // --- commands ----------------------------------------------------------------------
  function newId() {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function send(aggregate, id, type, payload, errorBox) {
    let message = ERROR_FALLBACK;
    try {
      const reply = await fetch(`/api/commands/${aggregate}/${encodeURIComponent(id)}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ type, payload }),
      });
      if (reply.ok) {
        if (errorBox) errorBox.textContent = "";
        return true;
      }
      const problem = await reply.json().catch(() => ({}));
      message = problem.message || `${reply.status} ${reply.statusText}`;
    } catch (_) { /* network error: the fallback message */ }
    if (errorBox) errorBox.textContent = message;
    return false;
  }
  // The app's own scripts (App.scripts) send their commands with these.
  window.ironstar = { send, newId };

  // --- SQL ---------------------------------------------------------------------------
  $("#sql-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const box = $("#sql-error");
    const out = $("#sql-result");
    try {
      const reply = await fetch("/api/sql", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sql: $("#sql").value }),
      });
      const answer = await reply.json();
      if (!reply.ok) { box.textContent = answer.message; return; }
      box.textContent = "";
      out.replaceChildren(table(answer.result));
    } catch (_) {
      box.textContent = ERROR_FALLBACK;
    }
  });

  function table(result) {
    const el = document.createElement("table");
    const head = el.createTHead().insertRow();
    for (const name of result.columns) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = name;
      head.append(th);
    }
    const rows = el.createTBody();
    for (const row of result.rows.slice(0, SQL_ROWS_SHOWN)) {
      const tr = rows.insertRow();
      for (const value of row) tr.insertCell().textContent = value === null ? "" : String(value);
    }
    if (result.truncated || result.rows.length > SQL_ROWS_SHOWN) {
      el.createCaption().textContent = `first ${Math.min(result.rows.length, SQL_ROWS_SHOWN)} rows`;
    }
    return el;
  }
})();
