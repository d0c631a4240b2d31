// The example app's panels: todo list and user profile forms send commands; the changes
// come back over the feed (gateway/dashboard/static/dashboard.js applies them). Loaded after the
// dashboard's script, which offers `window.ironstar.send` and `newId`.
"use strict";
(() => {
  const $ = (selector) => document.querySelector(selector);
  const { send, newId } = window.ironstar;
  const listId = $("[data-list]")?.dataset.list;
  const todo = (type, payload, errorBox) => send("todo_list", listId, type, payload, errorBox);

  $("#add-todo")?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("#new-todo");
    if (await todo("add_todo", { todo_id: newId(), text: input.value }, $("#add-todo-error"))) {
      input.value = "";
    }
    input.focus();
  });

  // The lists' chips are one live view for every page (one feed per browser): mark this
  // page's list again after an answer replaces them (also after a panel reload).
  new MutationObserver(() => {
    for (const link of document.querySelectorAll("#lists a:not([aria-current])")) {
      if (new URL(link.href).searchParams.get("list") === listId) link.setAttribute("aria-current", "page");
    }
  }).observe(document.body, { childList: true, subtree: true });

  $("#clear-completed")?.addEventListener("click", () => todo("clear_completed", {}, $("#list-error")));
  // "Clear completed" only while something is completed; the list changes live.
  const clearButton = $("#clear-completed");
  const todos = $(".todos");
  if (clearButton && todos) {
    const syncClear = () => {
      clearButton.disabled = !document.querySelector(".todo-list .toggle:checked");
    };
    new MutationObserver(syncClear).observe(todos, {
      subtree: true, childList: true, attributes: true, attributeFilter: ["checked"],
    });
    document.addEventListener("change", syncClear);
    syncClear();
  }

  document.addEventListener("change", async (event) => {
    const box = event.target;
    if (!box.matches?.(".todo .toggle")) return;
    const type = box.checked ? "complete_todo" : "reopen_todo";
    if (!(await todo(type, { todo_id: box.dataset.todo }, $("#list-error")))) {
      box.checked = !box.checked;
    }
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest?.(".todo button");
    if (!button) return;
    if (button.matches(".delete")) todo("delete_todo", { todo_id: button.dataset.todo }, $("#list-error"));
    if (button.matches(".rename")) startRename(button.closest(".todo"));
  });

  // Rename in place: Enter sends, Escape cancels; a rejection is shown under the input.
  function startRename(item) {
    if (item.querySelector(".edit")) return;
    const id = item.dataset.todo;
    const text = item.querySelector(".text");
    const form = document.createElement("form");
    form.className = "edit";
    form.innerHTML = `<label class="visually-hidden" for="edit-${id}">New text</label>
      <input id="edit-${id}" aria-describedby="edit-error-${id}">
      <p class="error" id="edit-error-${id}" role="alert"></p>`;
    const input = form.querySelector("input");
    input.value = text.textContent;
    item.append(form);
    input.focus();
    input.select();
    const close = () => { form.remove(); item.querySelector(".rename")?.focus(); };
    input.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const box = form.querySelector(".error");
      if (await todo("rename_todo", { todo_id: id, text: input.value }, box)) close();
    });
  }

  $("#user-form")?.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const type = event.submitter?.value || "register_user";
    const payload = {};
    for (const field of ["name", "email"]) {
      const value = form.elements[field].value.trim();
      if (value || type === "register_user") payload[field] = value;
    }
    const id = form.elements.user_id.value.trim();
    const box = $("#user-error");
    if (!id) { box.textContent = "Give the user an id, e.g. ada."; return; }
    await send("user_profile", id, type, payload, box);
  });

})();
