// The part of Datastar 1.0 the dashboard uses, first-party so the page works offline.
//
// Applies `datastar-patch-elements` (by id or `selector`; modes outer, inner, replace,
// prepend, append, before, after, remove) and `datastar-patch-signals` (merged into a
// store; `data-text="$name"` elements show a signal). Differences from the official
// bundle, on purpose: outer/replace swap the element instead of morphing it (focus is put
// back), and an inserted element whose id is already on the page replaces it, so an event
// delivered twice never shows twice. The feed itself is followed by feed.js.
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

  // Follow a feed on its own (the dashboard shares one per browser: feed.js) and apply it.
  function connect(url, onState = () => {}) {
    const from = new URL(url, location.href).searchParams.get("last_event_id");
    const each = (group) => group.messages.forEach((m) => apply(m.type, m.data));
    return window.ironstarFeed.read(url, Number.isFinite(Number(from)) && from ? Number(from) : null,
      each, onState);
  }

  window.datastarLite = { apply, connect, signals };
})();
