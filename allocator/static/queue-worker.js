// Asks for the person's status every few seconds and hands it to the queue page (queue.js).
// A worker's timers keep their pace in a hidden tab; asking is what keeps a queued place.
"use strict";

var POLL_MS = 3000;

function ask() {
  fetch("/_allocator/status", {
    headers: { Accept: "application/json" },
    credentials: "same-origin",
    cache: "no-store",
  })
    .then(function (response) {
      if (response.status === 401) {
        return { state: "signed_out" };
      }
      return response.ok ? response.json() : null;
    })
    .then(
      function (status) {
        if (status) {
          postMessage(status);
        }
      },
      function () {
        // offline for a moment: the next ask tries again
      },
    )
    .finally(function () {
      setTimeout(ask, POLL_MS);
    });
}

ask();
