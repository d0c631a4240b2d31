// The part of Datastar 1.0 the dashboard uses, first-party so the page works offline.
//
// Applies `datastar-patch-elements` (by id or `selector`; modes outer, inner, replace,
// prepend, append, before, after, remove) and `datastar-patch-signals` (merged into a
// store; `data-text="$name"` elements show a signal). Differences from the official
// bundle, on purpose: outer/replace swap the element instead of morphing it (focus is put
// back), and an inserted element whose id is already on the page replaces it, so an event
// delivered twice around a reconnect never shows twice.
"use strict";
(() => {
  const signals = {};

  function parse(data) {
    const fields = { elements: [], signals: [] };
    for (const line of data.split("\n")) {
      const cut = line.indexOf(" ");
      const key = cut < 0 ? line : line.slice(0, cut);
      const value = cut < 0 ? "" : line.slice(cut + 1);
      if (key === "elements" || key === "signals") fields[key].push(value);
      else fields[key] = value;
    }
    return fields;
  }

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return [...template.content.children];
  }

  function swap(target, element) {
    const focused = target.contains(document.activeElement) ? document.activeElement : null;
    target.replaceWith(element);
    if (focused) {
      const again = focused.id ? document.getElementById(focused.id) : null;
      (again || (element.matches(focused.tagName) ? element : null))?.focus();
    }
  }

  const insert = {
    prepend: (target, el) => target.prepend(el),
    append: (target, el) => target.append(el),
    before: (target, el) => target.before(el),
    after: (target, el) => target.after(el),
  };

  function patchElements(fields) {
    const mode = fields.mode || "outer";
    const selector = fields.selector;
    const elements = fragment(fields.elements.join("\n"));
    if (mode === "remove") {
      const targets = selector ? document.querySelectorAll(selector) : elements
        .map((el) => el.id && document.getElementById(el.id)).filter(Boolean);
      targets.forEach((t) => t.remove());
      return;
    }
    if (mode === "inner") {
      const target = selector ? document.querySelector(selector) : null;
      if (target) target.replaceChildren(...elements);
      return;
    }
    if (mode === "outer" || mode === "replace") {
      elements.forEach((el, i) => {
        const target = selector && i === 0 ? document.querySelector(selector)
          : el.id ? document.getElementById(el.id) : null;
        if (target) swap(target, el);
      });
      return;
    }
    const target = selector ? document.querySelector(selector) : null;
    if (!target || !insert[mode]) return;
    for (const el of mode === "prepend" || mode === "after" ? elements.reverse() : elements) {
      const existing = el.id ? document.getElementById(el.id) : null;
      if (existing) swap(existing, el);
      else insert[mode](target, el);
    }
  }

  function patchSignals(fields) {
    const patch = JSON.parse(fields.signals.join("\n") || "{}");
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete signals[key];
      else signals[key] = value;
    }
    document.querySelectorAll("[data-text]").forEach((el) => {
      const name = el.dataset.text.replace(/^\$/, "");
      if (name in patch) el.textContent = signals[name] ?? "";
    });
    document.dispatchEvent(new CustomEvent("datastar-signals", { detail: patch }));
  }

  function apply(type, data) {
    const fields = parse(data);
    if (type === "datastar-patch-elements") patchElements(fields);
    else if (type === "datastar-patch-signals") patchSignals(fields);
  }

  // Follow a feed. EventSource reconnects by itself with `Last-Event-ID`; when it gives up
  // (a 5xx or a refused connection it treats as fatal) we open a new one that resumes
  // with `last_event_id`, backing off up to 10 s. `onState(state)` hears every change.
  function connect(url, onState) {
    let lastId = new URL(url, location.href).searchParams.get("last_event_id") || "";
    let source = null;
    let delay = 500;
    const open = () => {
      const target = new URL(url, location.href);
      if (lastId) target.searchParams.set("last_event_id", lastId);
      source = new EventSource(target);
      source.onopen = () => { delay = 500; onState("live"); };
      source.onerror = () => {
        if (source.readyState === EventSource.CLOSED) {
          onState("reconnecting");
          setTimeout(open, delay);
          delay = Math.min(delay * 2, 10000);
        } else {
          onState("reconnecting");
        }
      };
      // `connected` carries the position the feed starts after: a page that saw nothing
      // else still resumes from it, so nothing appended while it was away is lost.
      source.addEventListener("connected", (event) => {
        if (event.lastEventId) lastId = event.lastEventId;
      });
      for (const type of ["datastar-patch-elements", "datastar-patch-signals"]) {
        source.addEventListener(type, (event) => {
          if (event.lastEventId) lastId = event.lastEventId;
          apply(type, event.data);
        });
      }
    };
    open();
    return { close: () => source && source.close() };
  }

  window.datastarLite = { apply, connect, signals };
})();
