// The give-back countdown inside the WebUI's page; allocator/badge.py adds this script to it.
// It lives in a shadow root, so the WebUI's CSS cannot reach it nor its CSS the WebUI, and it
// never lets an error out into the page: the WebUI must work as if it were not there.
(() => {
  "use strict";
  if (window.__sdaBadge) return; // the page was given the script twice
  window.__sdaBadge = true;

  const STATUS = "/_allocator/status";
  const KEEP = "/_allocator/keep";
  const RELEASE = "/_allocator/release";
  const HOME = "/_allocator/";
  const WINDOW_SECONDS = 120; // the countdown shows in the last two minutes
  const NEAR_POLL_SECONDS = 10;
  const FAR_POLL_SECONDS = 30;
  const STYLE = `
    :host { all: initial; } /* nothing inherited from the page (text-transform, spacing) */
    .box { font: 14px/1.4 system-ui, sans-serif; color: #1d2433; background: #fff8e6;
      border: 1px solid #e0b44c; border-radius: 8px; padding: 10px 12px; max-width: 320px;
      box-shadow: 0 4px 16px rgba(0, 0, 0, 0.25); }
    p { margin: 0 0 8px; }
    .time { font-weight: 600; font-variant-numeric: tabular-nums; }
    .buttons { display: flex; gap: 8px; flex-wrap: wrap; }
    button { font: inherit; border-radius: 6px; padding: 4px 10px; cursor: pointer;
      border: 1px solid #8a6d1f; background: #fff; color: #1d2433; }
    button.keep { background: #1d4ed8; border-color: #1d4ed8; color: #fff; }
    button:disabled { opacity: 0.6; cursor: default; }
  `;

  let badge = null; // {host, time, note, keep, release} once built
  let deadline = 0; // Date.now() at which the WebUI is given back, while shown
  let pollTimer = 0;
  let tickTimer = 0;

  const shows = (status) =>
    status.state === "ready" &&
    !status.busy &&
    typeof status.reclaim_in_seconds === "number" &&
    (status.reclaim_in_seconds < WINDOW_SECONDS || status.reclaim_reason === "pressure");

  // Far from the deadline: ask again when the two-minute window would start, at most every
  // FAR_POLL_SECONDS (activity elsewhere, a queue forming, can change it any time). While busy
  // (a generation, or only the page's own loading) it opens once the work ends: not sooner
  // than NEAR_POLL_SECONDS, and that often when it would open at once.
  function nextPoll(status) {
    if (shows(status)) return NEAR_POLL_SECONDS;
    if (status.state !== "ready" || typeof status.reclaim_in_seconds !== "number") {
      return FAR_POLL_SECONDS;
    }
    if (status.busy && status.reclaim_reason === "pressure") return NEAR_POLL_SECONDS;
    const untilWindow = status.reclaim_in_seconds - WINDOW_SECONDS + 1;
    const soonest = status.busy ? NEAR_POLL_SECONDS : 1;
    return Math.max(soonest, Math.min(FAR_POLL_SECONDS, untilWindow));
  }

  function element(tag, attributes, text) {
    const made = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
    if (text) made.textContent = text;
    return made;
  }

  function style(root) {
    try {
      const sheet = new CSSStyleSheet(); // not subject to the page's style-src
      sheet.replaceSync(STYLE);
      root.adoptedStyleSheets = [sheet];
    } catch (error) {
      root.appendChild(element("style", {}, STYLE));
    }
  }

  function build() {
    const host = document.createElement("sda-badge");
    host.id = "sda-badge";
    // Inline and important: outranks whatever the page's CSS says about this element.
    const place = { position: "fixed", right: "16px", bottom: "16px", "z-index": "2147483647" };
    for (const [name, value] of Object.entries(place)) host.style.setProperty(name, value, "important");
    const root = host.attachShadow({ mode: "open" });
    style(root);
    const box = element("div", { class: "box", id: "sda-badge-box", role: "region",
      "aria-label": "Your WebUI session" });
    const text = element("p", { id: "sda-badge-text" });
    const time = element("span", { class: "time", id: "sda-badge-time" });
    const note = element("span", { id: "sda-badge-note" });
    text.append("Your WebUI is given back in ", time, " if you do nothing", note, ".");
    const buttons = element("div", { class: "buttons" });
    const keep = element("button", { type: "button", class: "keep", id: "sda-badge-keep" },
      "Keep my WebUI");
    const release = element("button", { type: "button", id: "sda-badge-release" },
      "Give it back now");
    keep.addEventListener("click", () => keepIt());
    release.addEventListener("click", () => giveBack());
    buttons.append(keep, release);
    box.append(text, buttons);
    root.appendChild(box);
    return { host, text, time, note, keep, release };
  }

  function render() {
    if (!badge) badge = build();
    if (!badge.host.isConnected) (document.body || document.documentElement).appendChild(badge.host);
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    const clock = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    badge.time.textContent = left > 0 ? clock : "a moment";
    badge.host.dataset.secondsLeft = String(left);
    badge.host.style.setProperty("display", "block", "important");
  }

  function show(status) {
    deadline = Date.now() + status.reclaim_in_seconds * 1000;
    render();
    const notes = {
      pressure: " (people are waiting for a GPU)",
      over_quota: " (today's GPU hours are used up)",
    };
    badge.note.textContent = notes[status.reclaim_reason] || "";
    badge.host.dataset.reason = status.reclaim_reason || "";
    if (!tickTimer) tickTimer = setInterval(guarded(render), 1000);
  }

  function hide() {
    clearInterval(tickTimer);
    tickTimer = 0;
    if (badge) badge.host.style.setProperty("display", "none", "important");
  }

  function apply(status) {
    if (shows(status)) show(status);
    else hide();
    schedule(nextPoll(status));
  }

  function schedule(seconds) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, seconds * 1000);
  }

  async function ask(url, method) {
    // referrerPolicy: the allocator checks Origin on POST, which a page's no-referrer policy
    // would turn into "null".
    const answer = await fetch(url, { method, credentials: "same-origin", cache: "no-store",
      referrerPolicy: "same-origin", headers: { Accept: "application/json" } });
    return answer.ok ? answer.json() : null;
  }

  async function poll() {
    clearTimeout(pollTimer);
    let status = null;
    try {
      status = await ask(STATUS, "GET");
    } catch (error) {
      // signed out, the allocator restarting, offline: try again later
    }
    if (document.hidden) return; // paused; becoming visible polls again
    try {
      if (status) apply(status);
      else schedule(tickTimer ? NEAR_POLL_SECONDS : FAR_POLL_SECONDS);
    } catch (error) {
      schedule(FAR_POLL_SECONDS);
    }
  }

  async function keepIt() {
    badge.keep.disabled = true;
    try {
      const status = await ask(KEEP, "POST");
      if (status) apply(status);
    } catch (error) {
      // the next poll shows what is true
    } finally {
      badge.keep.disabled = false;
    }
  }

  async function giveBack() {
    badge.keep.disabled = badge.release.disabled = true;
    try {
      await ask(RELEASE, "POST");
    } catch (error) {
      // the session page says whether it was given back, and offers it again
    }
    window.location.assign(HOME);
  }

  function guarded(action) {
    return () => {
      try {
        action();
      } catch (error) {
        // never into the page
      }
    };
  }

  function visibilityChanged() {
    if (document.hidden) {
      clearTimeout(pollTimer);
      clearInterval(tickTimer);
      tickTimer = 0;
    } else {
      poll();
    }
  }

  function start() {
    document.addEventListener("visibilitychange", guarded(visibilityChanged));
    if (!document.hidden) poll();
  }

  try {
    // After the page's own loading, which would make the first answer "busy".
    if (document.readyState === "complete") start();
    else window.addEventListener("load", guarded(start), { once: true });
  } catch (error) {
    // never into the page
  }
})();
