// Makes a server-rendered page live. Without this file every page still works: it is
// only a faster "reload". The page names its JSON twin in <main data-live-src>; each
// reply carries re-rendered HTML for the page's [data-live] sections, and on the
// experiment page the job output that arrived since the last look.
"use strict";

(function () {
  const EVERY_MS = 1500;
  const KEEP_LOG_CHARS = 200000;

  // Forms that ask first (cancel, drain, revoke).
  document.addEventListener("submit", (event) => {
    const question = event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  const main = document.querySelector("main[data-live-src]");
  if (!main) return;
  const state = document.getElementById("live-state");
  const log = document.querySelector("pre[data-log]");

  function atBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 8;
  }

  function source() {
    const url = new URL(main.dataset.liveSrc, window.location.href);
    if (log) {
      if (log.dataset.logAttempt) url.searchParams.set("log_attempt", log.dataset.logAttempt);
      url.searchParams.set("log_offset", log.dataset.logOffset || "0");
    }
    return url;
  }

  function applyLog(update) {
    if (!log || !update) return;
    const follow = atBottom(log);
    if (update.reset) log.textContent = update.text;
    else if (update.text) log.textContent = (log.textContent + update.text).slice(-KEEP_LOG_CHARS);
    log.dataset.logAttempt = update.attempt || "";
    log.dataset.logOffset = String(update.next_offset);
    const label = document.querySelector("[data-log-label]");
    if (label && update.attempt) label.textContent = "attempt " + update.attempt;
    if (follow) log.scrollTop = log.scrollHeight;
  }

  function apply(body) {
    for (const [name, html] of Object.entries(body.sections || {})) {
      const el = main.querySelector(`[data-live="${name}"]`);
      if (el && el.innerHTML !== html) el.innerHTML = html;
    }
    applyLog(body.log);
  }

  async function tick() {
    if (!document.hidden) {
      try {
        const reply = await fetch(source(), { headers: { Accept: "application/json" } });
        if (reply.status === 401) {
          window.location.reload(); // the session ended: the page sends us to the login form
          return;
        }
        if (!reply.ok) throw new Error("HTTP " + reply.status);
        apply(await reply.json());
        state.textContent = "Live · updated " + new Date().toLocaleTimeString();
        state.dataset.state = "live";
      } catch (error) {
        state.textContent = "Live updates paused (" + error.message + "); retrying…";
        state.dataset.state = "error";
      }
    }
    window.setTimeout(tick, EVERY_MS);
  }

  if (log) log.scrollTop = log.scrollHeight;
  tick();
})();
