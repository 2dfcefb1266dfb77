// Shared UI pieces: toasts, the confirmation dialog and the API key dialog.

import { h, fill } from "./util.js";
import { getKey, setKey } from "./api.js";

export function toast(message, kind = "info", timeoutMs = 5000) {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, message),
    h("button", { class: "btn-ghost toast-close", type: "button", "aria-label": "Dismiss",
      onclick: () => item.remove() }, "×"));
  box.append(item);
  if (timeoutMs) setTimeout(() => item.remove(), timeoutMs);
  return item;
}

/** Ask for confirmation in a modal dialog; resolves true when confirmed. */
export function confirmDialog({ title, body, confirmText = "Confirm", danger = false }) {
  const dialog = document.getElementById("confirm-dialog");
  fill(dialog.querySelector(".dialog-title"), title);
  fill(dialog.querySelector(".dialog-body"), body);
  const ok = dialog.querySelector("[data-action=confirm]");
  ok.textContent = confirmText;
  ok.className = danger ? "btn btn-danger" : "btn btn-primary";
  return new Promise((resolve) => {
    const done = (value) => {
      dialog.removeEventListener("close", onClose);
      ok.removeEventListener("click", onOk);
      if (dialog.open) dialog.close();
      resolve(value);
    };
    const onOk = () => done(true);
    const onClose = () => done(false);
    ok.addEventListener("click", onOk);
    dialog.querySelector("[data-action=cancel]").onclick = () => dialog.close();
    dialog.addEventListener("close", onClose);
    dialog.showModal();
    dialog.querySelector("[data-action=cancel]").focus();
  });
}

let keyDialogOpen = false;

/** Show the API key form. `reason` explains why it is shown (e.g. after a 401). */
export function keyDialog(reason, onSaved) {
  const dialog = document.getElementById("key-dialog");
  if (keyDialogOpen) return;
  keyDialogOpen = true;
  const form = dialog.querySelector("form");
  const input = form.querySelector("input");
  const note = dialog.querySelector(".dialog-reason");
  fill(note, reason || "");
  note.hidden = !reason;
  input.value = getKey();
  dialog.querySelector("[data-action=forget]").hidden = !getKey();
  const close = () => {
    keyDialogOpen = false;
    form.onsubmit = null;
  };
  form.onsubmit = (ev) => {
    ev.preventDefault();
    setKey(input.value.trim());
    dialog.close();
    onSaved();
  };
  dialog.querySelector("[data-action=close]").onclick = () => dialog.close();
  dialog.querySelector("[data-action=forget]").onclick = () => {
    setKey("");
    dialog.close();
    onSaved();
  };
  dialog.addEventListener("close", close, { once: true });
  dialog.showModal();
  input.focus();
}
