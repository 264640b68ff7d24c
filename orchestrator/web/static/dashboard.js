// hexfleet dashboard: elements with data-refresh="URL" replace their content with the HTML
// fragment at URL every data-every seconds. A fragment answered with the header
// X-Hexfleet-Final: 1 is the last (a finished job); a 401 means the login expired: reload.
(function () {
  "use strict";
  function poll(el) {
    var every = Math.max(1, Number(el.dataset.every || 3)) * 1000;
    function tick() {
      fetch(el.dataset.refresh, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return; }
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          var last = response.headers.get("X-Hexfleet-Final") === "1";
          return response.text().then(function (html) {
            el.innerHTML = html;
            el.dataset.refreshed = String(Number(el.dataset.refreshed || 0) + 1);
            delete el.dataset.refreshError;
            if (!last) { window.setTimeout(tick, every); }
          });
        })
        .catch(function (error) {
          el.dataset.refreshError = String(error);
          window.setTimeout(tick, every * 2);
        });
    }
    window.setTimeout(tick, every);
  }
  document.querySelectorAll("[data-refresh]").forEach(poll);
})();
