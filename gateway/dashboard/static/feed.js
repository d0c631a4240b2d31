// One feed per browser, shared by its tabs: over HTTP/1.1 a browser opens at most six
// connections per origin, so a feed per tab would stop the seventh tab (and every fetch).
//
// The tabs elect a leader with a Web Lock; only the leader holds an EventSource, and it
// forwards the feed over a BroadcastChannel as *groups*: the messages of one stream position,
// sent once the message carrying its `id:` arrived, as {prev, id, messages}. Every tab keeps
// the position it has applied and applies a group only when `prev <= applied < id`: a group
// seen twice is skipped, and a gap (a tab that opened after the group went by, or missed one)
// is filled by a short catch-up feed of its own from its position, closed once it meets the
// shared one. When the leader closes, the lock passes to another tab, which opens the feed
// from its own applied position: nothing is lost, nothing applied twice. Partial groups are
// never forwarded, so a leader dying mid-event costs nothing. A group whose id is below the
// one before it is a snapshot after an unresumable position: it is applied and starts over.
//
// Without Web Locks or BroadcastChannel (an insecure context: plain HTTP to a host that is
// not localhost) every tab follows its own feed, as before.
"use strict";
(() => {
  const PATCHES = ["datastar-patch-elements", "datastar-patch-signals"];
  const MARKERS = ["connected", "skipped", "lag", "snapshot", "batch", "message"];
  const CATCH_UP_IDLE_MS = 1500;
  const num = (id) => {
    const n = id === "" || id === null || id === undefined ? NaN : Number(id);
    return Number.isFinite(n) ? n : null;
  };

  // Read a feed from position `from` with EventSource; `onGroup` hears each complete group.
  // EventSource reconnects by itself with Last-Event-ID; when it gives up (a status it
  // treats as fatal) we open a new one from the last complete group, backing off to 10 s.
  function read(url, from, onGroup, onState) {
    let last = from;
    let pending = [];
    let source = null;
    let delay = 500;
    let timer = null;
    let closed = false;
    const open = () => {
      if (closed) return;
      const target = new URL(url, location.href);
      if (last !== null) target.searchParams.set("last_event_id", String(last));
      pending = [];
      source = new EventSource(target);
      // Live once the gateway's first frame arrives: a proxy's `retry:`-only answer (while
      // the gateway restarts) opens the EventSource too, but it is not the feed.
      source.addEventListener("connected", () => { delay = 500; onState("live"); });
      source.onerror = () => {
        pending = []; // the server sends a partial group again, after the last id
        onState("reconnecting");
        if (source.readyState === EventSource.CLOSED) {
          timer = setTimeout(open, delay);
          delay = Math.min(delay * 2, 10000);
        }
      };
      const hear = (type) => (event) => {
        if (PATCHES.includes(type)) pending.push({ type, data: event.data });
        const id = num(event.lastEventId);
        if (id !== null && id !== last) {
          // An id below the last one: the server could not resume there (a stream that was
          // replaced) and sent a snapshot; positions start again from it.
          const reset = last !== null && id < last;
          const group = { prev: last, id, messages: pending, reset };
          pending = [];
          last = id;
          onGroup(group);
        }
      };
      for (const type of [...PATCHES, ...MARKERS]) source.addEventListener(type, hear(type));
    };
    open();
    return {
      close() { closed = true; clearTimeout(timer); source?.close(); },
      get position() { return last; },
    };
  }

  // Follow `url` from `since` (the position the page was rendered at; null: from now).
  // `apply(messages)` gets each group's messages once, in order; `onState` hears
  // "live" / "reconnecting".
  function follow(url, since, apply, onState) {
    const key = new URL(url, location.href);
    key.searchParams.delete("last_event_id");
    const name = `ironstar-feed ${key.pathname}${key.search}`;
    let applied = num(since);
    let queue = [];
    let leaderAt = null;
    let catchUp = null;
    let idle = null;
    let leading = false;
    // The rendered position is the page's claim until a feed answered from it: a tab whose
    // position is ahead of the leader's may hold a position the stream never reached (a
    // stream that was replaced), which no shared group will ever pass. Such a tab asks the
    // gateway once with a catch-up feed of its own: a resumable position is confirmed (the
    // feed stays quiet), an unresumable one gets a snapshot and starts over from it.
    let confirmed = applied === null;
    const doubtful = () => !confirmed && leaderAt !== null && applied !== null && leaderAt < applied;

    // `current`: a catch-up just found nothing more to send, so a group without messages
    // (a position marker, e.g. a fresh feed's first frame) cannot hide events from us.
    const take = (group, current = false) => {
      if (group.reset) {
        apply(group.messages);
        applied = group.id;
        return true;
      }
      if (applied !== null && group.id <= applied) return true;
      const gap = applied !== null && (group.prev === null || group.prev > applied);
      if (gap && !(current && group.messages.length === 0)) return false;
      apply(group.messages);
      applied = group.id;
      return true;
    };
    const drain = (current = false) => {
      while (queue.length && take(queue[0], current)) queue.shift();
      if (queue.length || (leaderAt !== null && applied !== null && leaderAt > applied)
          || doubtful()) {
        startCatchUp();
      }
    };
    const stopCatchUp = () => {
      clearTimeout(idle);
      catchUp?.close();
      catchUp = null;
    };
    const caughtUp = () => (queue.length ? queue[0].prev !== null && queue[0].prev <= applied
      : leaderAt === null || applied >= leaderAt);
    const startCatchUp = () => {
      if (catchUp || leading || applied === null) return;
      // Idle only counts once the catch-up feed answered (its `connected` frame): then its
      // silence means "nothing more". Until then EventSource keeps trying, like the leader.
      let reached = false;
      const settle = () => {
        if (caughtUp()) { stopCatchUp(); drain(); }
      };
      const quiet = () => {
        leaderAt = null;
        stopCatchUp();
        drain(true);
      };
      const rest = () => {
        clearTimeout(idle);
        if (reached) idle = setTimeout(quiet, CATCH_UP_IDLE_MS);
      };
      catchUp = read(url, applied, (group) => { take(group); rest(); settle(); }, (next) => {
        if (next === "live") reached = confirmed = true;
        rest();
      });
    };

    if (!("locks" in navigator) || !("BroadcastChannel" in window)) {
      read(url, applied, take, onState);
      return;
    }
    const channel = new BroadcastChannel(name);
    let state = "connecting";
    channel.onmessage = ({ data }) => {
      if (leading) {
        if (data.kind === "hello") channel.postMessage({ kind: "state", state, position: applied });
        return;
      }
      if (data.kind === "state") {
        onState(data.state);
        leaderAt = data.position;
        drain();
      } else if (data.kind === "group") {
        leaderAt = data.group.id;
        if (catchUp) queue.push(data.group);
        else if (!take(data.group)) { queue.push(data.group); startCatchUp(); }
        else if (doubtful()) startCatchUp();
      }
    };
    channel.postMessage({ kind: "hello" });

    // The lock is held until this tab closes; then the next waiting tab leads.
    navigator.locks.request(name, () => new Promise(() => {
      leading = confirmed = true;
      stopCatchUp();
      queue = [];
      read(url, applied, (group) => {
        channel.postMessage({ kind: "group", group });
        take(group);
      }, (next) => {
        state = next;
        channel.postMessage({ kind: "state", state, position: applied });
        onState(next);
      });
    }));
  }

  // Follow a live view (`/ui/live/...`) from `since`: its messages are whole answers, each
  // as of its id, so a tab applies one only when it is newer than what it shows (or after a
  // reset), never catches up, and needs no order between tabs. Shared like the event feed:
  // the leader holds the one connection per view and keeps the latest answer for a tab
  // that opens later (it says "hello"). `apply(messages)` gets each newer answer.
  function latest(url, since, apply) {
    const key = new URL(url, location.href);
    key.searchParams.delete("last_event_id");
    const name = `ironstar-live ${key.pathname}${key.search}`;
    let shown = num(since);
    let last = null;
    let leading = false;
    const take = (group) => {
      if (!group.reset && shown !== null && group.id <= shown) return;
      apply(group.messages);
      shown = group.id;
    };
    const quiet = () => {};
    if (!("locks" in navigator) || !("BroadcastChannel" in window)) {
      read(url, shown, take, quiet);
      return;
    }
    const channel = new BroadcastChannel(name);
    channel.onmessage = ({ data }) => {
      if (!leading && data.kind === "group") take(data.group);
      else if (leading && data.kind === "hello" && last) {
        channel.postMessage({ kind: "group", group: { ...last, reset: false } });
      }
    };
    channel.postMessage({ kind: "hello" });
    navigator.locks.request(name, () => new Promise(() => {
      leading = true;
      read(url, shown, (group) => {
        last = group;
        channel.postMessage({ kind: "group", group });
        take(group);
      }, quiet);
    }));
  }

  window.ironstarFeed = { follow, latest, read };
})();
