// Small helpers shared by the views: DOM building (never innerHTML with data),
// formatting of times, durations, numbers and JSON.

/** h("div", {class: "x", onclick: fn}, child, "text", [more]) -> Element */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace the children of `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtTime(ts) {
  if (ts === null || ts === undefined) return "–";
  const d = new Date(ts * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  const today = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

export function fmtTimePrecise(ts) {
  if (ts === null || ts === undefined) return "–";
  const ms = String(Math.floor((ts * 1000) % 1000)).padStart(3, "0");
  return `${fmtTime(ts)}.${ms}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.abs(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

export function fmtAgo(ts) {
  if (ts === null || ts === undefined) return "–";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 1) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function fmtNum(n, digits = 0) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US", {
    maximumFractionDigits: digits, minimumFractionDigits: digits,
  });
}

export function fmtRate(perSecond) {
  if (!perSecond) return "0/s";
  if (perSecond < 0.1) return `${fmtNum(perSecond * 60, 1)}/min`;
  return `${fmtNum(perSecond, perSecond < 10 ? 2 : 1)}/s`;
}

export function fmtPercent(ratio) {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "–";
  return `${fmtNum(ratio * 100, ratio < 0.1 && ratio > 0 ? 1 : 0)}%`;
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

export function shortId(id) {
  return id && id.length > 12 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

/** A status pill; the CSS colours it by status name. */
export function badge(status, extra) {
  return h("span", { class: `badge s-${status}${extra ? ` ${extra}` : ""}` }, status);
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

/** A <pre> block of code with a copy button. */
export function codeBlock(text, cls = "") {
  const pre = h("pre", { class: `code ${cls}` }, text);
  const copy = h("button", {
    class: "btn-ghost copy", type: "button", title: "Copy to clipboard",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Select + copy";
      }
      setTimeout(() => { copy.textContent = "Copy"; }, 1500);
    },
  }, "Copy");
  return h("div", { class: "code-wrap" }, copy, pre);
}

/** Parse "a=1&b=2" from the hash route into an object without empty values. */
export function parseQuery(qs) {
  const out = {};
  for (const [k, v] of new URLSearchParams(qs || "")) if (v !== "") out[k] = v;
  return out;
}

export function toQuery(params) {
  const sp = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") sp.set(k, v);
  }
  const s = sp.toString();
  return s ? `?${s}` : "";
}

/**
 * Label every body cell with its column's header so that narrow screens can show each
 * row as a stacked card (see `.table.stack` in app.css).
 */
export function stackTable(table) {
  table.classList.add("stack");
  const labels = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
  for (const tr of table.querySelectorAll("tbody tr")) {
    [...tr.children].forEach((td, i) => {
      if (!td.hasAttribute("colspan") && labels[i]) td.dataset.label = labels[i];
    });
  }
  return table;
}
