// The queue page, live: the person's place, the estimate and what it waits for, without
// reloading; when it is their turn (anything but "queued") the page reloads into the WebUI
// or its progress. The asking happens in a worker (queue-worker.js): it keeps the place
// (SDA_QUEUE_ABANDON) even in a hidden tab, whose own timers browsers slow to once a minute.
(function () {
  "use strict";

  var RELOADED = "sda-queue-reloaded";
  var RELOAD_GAP_MS = 5000;

  function setText(id, value) {
    var element = document.getElementById(id);
    if (element) {
      element.textContent = value;
    }
  }

  function etaText(seconds) {
    if (seconds === null || seconds === undefined) {
      return "Estimated wait: unknown.";
    }
    if (seconds < 60) {
      return "Estimated wait: less than a minute.";
    }
    var minutes = Math.round(seconds / 60);
    return "Estimated wait: about " + minutes + (minutes === 1 ? " minute." : " minutes.");
  }

  function notQueued() {
    // Left, removed by an administrator, or silent too long: say so instead of queueing
    // them again behind everyone by reloading.
    worker.terminate();
    setText("state", "Not in the queue any more");
    setText("message", "You are no longer waiting for a GPU.");
    setText("eta", "");
    ["place", "leave-form"].forEach(function (id) {
      var element = document.getElementById(id);
      if (element) {
        element.hidden = true;
      }
    });
    var again = document.getElementById("again");
    if (again) {
      again.hidden = false;
    }
  }

  function reload() {
    // Never more than once in a few seconds, should the page and the status disagree.
    var last = Number(window.sessionStorage.getItem(RELOADED) || 0);
    var wait = Math.max(0, last + RELOAD_GAP_MS - Date.now());
    worker.terminate();
    window.setTimeout(function () {
      window.sessionStorage.setItem(RELOADED, String(Date.now()));
      window.location.reload();
    }, wait);
  }

  function show(status) {
    if (status.state === "none") {
      notQueued();
      return;
    }
    if (status.state !== "queued") {
      reload(); // their turn (or a failure to show): the page says which
      return;
    }
    setText("position", String(status.position));
    setText("queue-length", String(status.queue_length));
    setText("eta", etaText(status.eta_seconds));
    if (status.message) {
      setText("message", status.message);
    }
    if (typeof status.waited_seconds === "number") {
      setText("waited", "Waiting for " + status.waited_seconds + " s. This page updates by itself.");
    }
    document.body.setAttribute("data-updated", String(Date.now()));
  }

  var worker = new Worker("/_allocator/static/queue-worker.js");
  worker.onmessage = function (event) {
    show(event.data);
  };
})();
