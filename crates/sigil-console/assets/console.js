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
  // Larger downloads go straight to the browser's own download (no progress, no copy in
  // the page's memory).
  var IN_PAGE_LIMIT = 256 * 1048576;
  function Too() {}
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
      // A redirect here is the login page (the session ended): not the file asked for.
      if (response.redirected) { throw new Error("your session ended; log in again"); }
      if (!response.ok) { throw new Error("the server answered " + response.status); }
      var total = Number(response.headers.get("Content-Length")) || 0;
      if (total > IN_PAGE_LIMIT) { throw new Too(); }
      if (total) { bar.max = total; }
      var reader = response.body.getReader();
      var parts = [];
      var received = 0;
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) { return; }
          parts.push(step.value);
          received += step.value.length;
          // Too large to hold in the page: let the browser save it as it comes instead.
          if (received > IN_PAGE_LIMIT) { reader.cancel(); throw new Too(); }
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
        // The link keeps working for a while; then the page lets the memory go.
        setTimeout(function () { URL.revokeObjectURL(save.href); }, 60000);
      });
    }).catch(function (e) {
      if (e instanceof Too) {
        status.textContent = " Large file: your browser saves it directly.";
        window.location.assign(link.href);
        return;
      }
      status.textContent = " Failed: " + e.message + ". Try again, or ask for a shorter period.";
    });
  }
  // Tables sort by any column in the page: the header becomes a button, the order shows in
  // aria-sort. Times sort by their instant, numbers as numbers. Tables the server pages and
  // orders itself (data-server-order), and tables with merged cells or nested tables, stay
  // as they are.
  function sortKey(cell) {
    var time = cell.querySelector("time[datetime]");
    if (time) { return { n: Date.parse(time.getAttribute("datetime")) }; }
    var text = cell.textContent.trim();
    var number = Number(text.replace(/,/g, ""));
    return text !== "" && !isNaN(number) ? { n: number } : { t: text.toLowerCase() };
  }
  function compare(a, b) {
    if (a.n !== undefined && b.n !== undefined) { return a.n - b.n; }
    if (a.n !== undefined) { return -1; }
    if (b.n !== undefined) { return 1; }
    return a.t < b.t ? -1 : a.t > b.t ? 1 : 0;
  }
  function sortable(table) {
    if (table.hasAttribute("data-server-order") || table.querySelector("table, [rowspan], [colspan]")) { return false; }
    var head = table.tHead && table.tHead.rows[table.tHead.rows.length - 1];
    var body = table.tBodies[0];
    if (!head || !body || body.rows.length < 2) { return false; }
    for (var i = 0; i < body.rows.length; i++) {
      if (body.rows[i].cells.length !== head.cells.length) { return false; }
    }
    return true;
  }
  function enhance(table) {
    var head = table.tHead.rows[table.tHead.rows.length - 1];
    Array.prototype.forEach.call(head.cells, function (th, column) {
      if (th.querySelector("button, a")) { return; }
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      while (th.firstChild) { button.appendChild(th.firstChild); }
      th.appendChild(button);
      th.setAttribute("aria-sort", "none");
      button.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(head.cells, function (other) {
          if (other.hasAttribute("aria-sort")) { other.setAttribute("aria-sort", "none"); }
        });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var order = compare(sortKey(a.cells[column]), sortKey(b.cells[column]));
          return ascending ? order : -order;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }
  function enhanceTables(root) {
    var tables = root.querySelectorAll("table");
    for (var i = 0; i < tables.length; i++) {
      if (!tables[i].hasAttribute("data-sorting") && sortable(tables[i])) {
        tables[i].setAttribute("data-sorting", "");
        enhance(tables[i]);
      }
    }
  }
  document.addEventListener("DOMContentLoaded", function () { enhanceTables(document); });
  document.addEventListener("htmx:afterSwap", function (e) { enhanceTables(e.target); });

  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("a[data-progress]");
    if (!link || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) { return; }
    e.preventDefault();
    download(link);
  });
})();
