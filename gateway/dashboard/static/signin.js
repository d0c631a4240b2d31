// The sign-in page: exchange a pasted bearer token for the session cookie, then reload.
"use strict";
(() => {
  const form = document.querySelector("#sign-in");
  const error = document.querySelector("#sign-in-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = form.token.value.trim();
    try {
      const reply = await fetch("/api/session", {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
      });
      if (reply.ok) {
        location.reload();
        return;
      }
      const body = await reply.json().catch(() => ({}));
      error.textContent = body.message || `The gateway answered ${reply.status}.`;
    } catch (_) {
      error.textContent = "The gateway is not reachable; try again.";
    }
  });
})();
