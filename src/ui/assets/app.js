// stowage dashboard: live progress of the jobs shown on a page. The pages work without
// it; it only refreshes their job rows every two seconds while one is still running.
"use strict";
(function () {
  function running() {
    return Array.prototype.some.call(document.querySelectorAll("tr[data-job] td.status"), function (cell) {
      var status = cell.getAttribute("data-status");
      return status === "queued" || status === "running";
    });
  }
  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    var unit = 0;
    while (n >= 1024 && unit + 1 < units.length) { n /= 1024; unit += 1; }
    return unit === 0 ? n + " B" : n.toFixed(1) + " " + units[unit];
  }
  function refresh() {
    if (!running()) { return; }
    fetch("/ui/jobs.json", { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (body) {
        if (!body) { return; }
        body.jobs.forEach(function (job) {
          var row = document.querySelector('tr[data-job="' + job.id + '"]');
          if (!row) { return; }
          var status = row.querySelector("td.status");
          status.setAttribute("data-status", job.status);
          status.textContent = job.status;
          var bar = row.querySelector("progress");
          if (bar && job.bytes_total > 0) { bar.max = job.bytes_total; bar.value = job.bytes_done; }
          var done = row.querySelector(".done");
          if (done) { done.textContent = human(job.bytes_done); }
          if (job.status !== "queued" && job.status !== "running") {
            var cancel = row.querySelector("form");
            if (cancel) { cancel.remove(); }
          }
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () { setInterval(refresh, 2000); });
})();
