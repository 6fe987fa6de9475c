// Sigil console: the little the pages need beyond HTML. Times are sent in UTC; show them in
// the reader's own time zone and keep UTC in the title (shown on hover).
(function () {
  "use strict";
  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short"
  });
  function localise(root) {
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var t = times[i];
      var when = new Date(t.getAttribute("datetime"));
      if (!isNaN(when.getTime()) && !t.hasAttribute("data-local")) {
        t.textContent = format.format(when);
        t.setAttribute("data-local", "");
      }
    }
  }
  document.addEventListener("DOMContentLoaded", function () { localise(document); });
  document.addEventListener("htmx:afterSwap", function (e) { localise(e.target); });

  // Long downloads (an evidence bundle, a report, an export) show their progress: the bytes
  // received so far (a share when the server says the size), then a link to save what came.
  // Without JavaScript the link is a plain download.
  function size(n) {
    if (n < 1024) { return n + " bytes"; }
    if (n < 1048576) { return (n / 1024).toFixed(1) + " KiB"; }
    return (n / 1048576).toFixed(1) + " MiB";
  }
  function fileName(response, link) {
    var header = response.headers.get("Content-Disposition") || "";
    var match = /filename="?([^";]+)"?/.exec(header);
    return match ? match[1] : (link.getAttribute("download") || "download");
  }
  function download(link) {
    var status = link.parentNode.querySelector("[data-progress-status]");
    if (!status) {
      status = document.createElement("span");
      status.setAttribute("data-progress-status", "");
      status.setAttribute("role", "status");
      link.insertAdjacentElement("afterend", status);
    }
    var bar = document.createElement("progress");
    bar.setAttribute("aria-label", "Download progress");
    status.textContent = " Preparing\u2026 ";
    status.appendChild(bar);
    fetch(link.href, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) { throw new Error("the server answered " + response.status); }
      var total = Number(response.headers.get("Content-Length")) || 0;
      if (total) { bar.max = total; }
      var reader = response.body.getReader();
      var parts = [];
      var received = 0;
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) { return; }
          parts.push(step.value);
          received += step.value.length;
          if (total) { bar.value = received; }
          status.firstChild.textContent = " " + size(received) + (total ? " of " + size(total) : "") + " received ";
          return pump();
        });
      }
      return pump().then(function () {
        var blob = new Blob(parts, { type: response.headers.get("Content-Type") || "" });
        var save = document.createElement("a");
        save.href = URL.createObjectURL(blob);
        save.download = fileName(response, link);
        save.textContent = "Save " + save.download;
        status.textContent = " Done: " + size(received) + ". ";
        status.appendChild(save);
        save.click();
      });
    }).catch(function (e) {
      status.textContent = " Failed: " + e.message + ". Try again, or ask for a shorter period.";
    });
  }
  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("a[data-progress]");
    if (!link || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) { return; }
    e.preventDefault();
    download(link);
  });
})();
