// Loaded (not deferred) just before the official Datastar bundle's module script: notes at
// once when that script cannot load (a 404, CORS, a refused or blocked address), before the
// deferred dashboard.js runs, which then says so instead of "live" without waiting for an
// event. A script element's `error` does not bubble, so it is heard in the capture phase.
"use strict";
window.addEventListener("error", (event) => {
  if (event.target?.id !== "datastar") return;
  document.documentElement.dataset.datastar = "failed";
  document.dispatchEvent(new CustomEvent("ironstar-datastar-failed"));
}, true);
