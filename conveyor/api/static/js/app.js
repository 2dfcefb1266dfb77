// The dashboard shell: hash routing, the 2-second poll (paused while the tab is hidden),
// connection status, and the API key button.

import * as api from "./api.js";
import { recordStats, totalCount } from "./state.js";
import { keyDialog } from "./ui.js";
import { parseQuery } from "./util.js";
import * as overview from "./views/overview.js";
import * as jobs from "./views/jobs.js";
import * as job from "./views/job.js";
import * as dlq from "./views/dlq.js";
import * as workers from "./views/workers.js";

const POLL_MS = 2000;

const routes = [
  { pattern: /^\/overview$/, view: overview, nav: "overview", title: "Overview" },
  { pattern: /^\/jobs$/, view: jobs, nav: "jobs", title: "Jobs" },
  { pattern: /^\/jobs\/([^/]+)$/, view: job, nav: "jobs", title: "Job" },
  { pattern: /^\/dlq$/, view: dlq, nav: "dlq", title: "Dead letters" },
  { pattern: /^\/workers$/, view: workers, nav: "workers", title: "Workers" },
];

let current = null;      // {view instance, route key}
let timer = null;
let inFlight = null;
let again = false;       // a tick was asked for while one was under way
let unauthorized = false;

const main = document.getElementById("main");
const statusEl = document.getElementById("live-status");

function setStatus(kind, text) {
  statusEl.className = `live live-${kind}`;
  statusEl.querySelector(".live-text").textContent = text;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/overview";
  const at = raw.indexOf("?");
  const path = decodeURIComponent(at < 0 ? raw : raw.slice(0, at));
  return { path, query: parseQuery(at < 0 ? "" : raw.slice(at + 1)) };
}

function route() {
  const { path, query } = parseHash();
  const match = routes.find((r) => r.pattern.test(path));
  if (!match) {
    location.replace("#/overview");
    return;
  }
  const params = path.match(match.pattern).slice(1);
  const key = `${path}?${JSON.stringify(query)}`;
  if (current && current.key === key) return;
  if (current?.instance.unmount) current.instance.unmount();
  for (const a of document.querySelectorAll("nav a[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === match.nav);
    if (a.dataset.nav === match.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `${match.title} · Conveyor`;
  main.replaceChildren();
  main.scrollTop = 0;
  const instance = match.view.mount(main, { params, query, navigate });
  current = { key, instance };
  tick();
}

/** Change the hash query of the current route without remounting the view. */
function navigate(hash, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", hash);
  else history.pushState(null, "", hash);
  const { path, query } = parseHash();
  if (current) current.key = `${path}?${JSON.stringify(query)}`;
}

async function refreshAll() {
  const stats = await api.get("/v1/stats");
  recordStats(stats);
  const dead = totalCount("dead");
  const badge = document.getElementById("dlq-count");
  badge.textContent = dead > 999 ? "999+" : String(dead);
  badge.hidden = dead === 0;
  if (current?.instance.refresh) await current.instance.refresh();
}

async function tick() {
  clearTimeout(timer);
  timer = null;
  if (document.hidden) {
    setStatus("paused", "Paused");
    return;
  }
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = (async () => {
    try {
      await refreshAll();
      unauthorized = false;
      setStatus(document.hidden ? "paused" : "ok", document.hidden ? "Paused" : "Live");
    } catch (err) {
      if (!(err instanceof api.ApiError)) {
        console.error(err);  // a bug in the page, not an API answer: make it visible
        setStatus("error", "Page error");
      } else if (err.status === 401) setStatus("error", "Key needed");
      else if (err.status === 0) setStatus("error", "Offline");
      else setStatus("error", `Error ${err.status}`);
    } finally {
      inFlight = null;
      if (!document.hidden && !unauthorized) timer = setTimeout(tick, again ? 0 : POLL_MS);
      again = false;
    }
  })();
}

function askForKey(reason) {
  keyDialog(reason, () => {
    unauthorized = false;
    // remount the view so everything is fetched with the new key
    current = null;
    route();
  });
}

api.on("unauthorized", () => {
  unauthorized = true;
  askForKey("The API needs a key (it answered 401 Unauthorized). It is kept for this browser session only.");
});

document.getElementById("key-button").addEventListener("click", () => askForKey(""));
document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearTimeout(timer);
    timer = null;
    setStatus("paused", "Paused");
  } else {
    tick();
  }
});
window.addEventListener("hashchange", route);
window.addEventListener("popstate", route);
route();
