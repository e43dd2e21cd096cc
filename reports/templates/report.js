/* pcap-audit report: pages, sorts and filters the tables from the JSON block.
   Every cell arrives made (auditor/report/cells.py: [text, sort key, title, class, sub-lines], or the
   index of a shared one in data.cells), but for a flow's own cells (numbers and timestamps), the
   service cells that name their evidence and the reason cells that name a host, which arrive as
   columns (and templates) and are made below
   as cells.py makes them; otherwise this script only shows cells. A null or
   missing key is the text; a title true is the key, a number the text of that shared cell; a record's
   own cell without a class has its column's (data.classes).
   Data is only ever inserted with textContent / setAttribute: never as markup. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("audit-data").textContent);
  var PAGE = data.pageSize, SHARED = data.cells;
  var collator = new Intl.Collator("en", {numeric: true, sensitivity: "base"});

  function num(n) { return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }  // as cells.fmt_num

  // A flow's own cells (packets, bytes, first and last seen, first frame) arrive as columns of numbers
  // (auditor/report/view.py, _FlowPass.own_columns and chunks); made here as cells.FlowCells.own makes them.
  function fmtBytes(n) {  // cells.fmt_bytes
    var value = n, unit = "B", units = ["KiB", "MiB", "GiB", "TiB"];
    for (var u = 0; u < units.length && value >= 1024; u++) { value = value / 1024; unit = units[u]; }
    return unit === "B" ? String(n) + " B" : (Math.floor(value * 10 + 0.5) / 10).toFixed(1) + " " + unit;
  }
  function pad(n, width) { var s = String(n); while (s.length < width) { s = "0" + s; } return s; }
  function tsCell(t) {  // microseconds since the epoch, or document.iso's text, or null
    if (typeof t === "number") {
      var sec = Math.floor(t / 1e6);
      t = new Date(sec * 1000).toISOString().slice(0, 19) + "." + pad(t - sec * 1e6, 6) + "Z";
    }
    if (!t) { return [""]; }
    var text = t.slice(0, 19).replace(/T/g, " ");  // cells.fmt_ts
    return text === t ? [text, null, t] : [text, t, true];
  }
  // A service cell whose title names its evidence's frames and first bytes arrives as -1 - t for the
  // template t in data.svc.t ([text, key, class, title parts]) and, in the batch's column e, four
  // members per part after the first: the frame's input and number, the first bytes, the detail's
  // index in data.svc.d; made here as cells.FlowCells.svc_title makes its title.
  function svcCell(t, e, at) {
    var parts = t[3], title = parts[0];
    for (var j = 1; j < parts.length; j++, at += 4) {
      var detail = data.svc.d[e[at + 3]];
      title += (data.multiInput ? "input " + e[at] + " frame " : "frame ") + e[at + 1] + ": " + e[at + 2] +
        (detail ? " (" + detail + ")" : "") + parts[j];
    }
    return [t[0], t[1], title, t[2]];
  }
  // A rule / reason cell whose text names one of the flow's hosts arrives as -1 - t for the template t
  // in data.why ([side, text before the address, after it, the reason's code]): the address is the
  // sort key of the flow's host cell on that side (1: initiator, 2: responder); made here as
  // cells.FlowCells.why makes the cell of such a text.
  function whyCell(t, host) {
    var h = SHARED[host];
    return [t[1] + (h.length > 1 && h[1] !== null ? h[1] : h[0]) + t[2], null, "", "", [t[3]]];
  }
  // A column of numbers arrives as its typecode, ":" and the base64 of the numbers' little-endian
  // bytes in it (view.py, _packed).
  var READ = {
    b: [1, function (v, at) { return v.getInt8(at); }],
    h: [2, function (v, at) { return v.getInt16(at, true); }],
    i: [4, function (v, at) { return v.getInt32(at, true); }],
    q: [8, function (v, at) { return v.getInt32(at + 4, true) * 4294967296 + v.getUint32(at, true); }],
    d: [8, function (v, at) { return v.getFloat64(at, true); }]
  };
  function column(text) {
    var how = READ[text.charAt(0)], width = how[0], read = how[1], bin = atob(text.slice(2));
    var bytes = new Uint8Array(bin.length), out = new Array(bin.length / width);
    for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
    var view = new DataView(bytes.buffer);
    for (var k = 0; k < out.length; k++) { out[k] = read(view, k * width); }
    return out;
  }
  // Seconds to whole microseconds as Python's round does (half to even), or the time's text.
  function micros(t, odd, k) {
    if (odd && Object.prototype.hasOwnProperty.call(odd, k)) { return odd[k]; }
    var x = t * 1e6, f = Math.floor(x), d = x - f;
    return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
  }
  function flowRecords(batches) {
    var out = [];
    batches.forEach(function (b) {
      var ix = column(b.ix), e = b.e, at = 0, ps = column(b.p), bs = column(b.b), fis = column(b.fi),
        fns = column(b.fn), t0 = column(b.t0), t1 = column(b.t1);
      for (var k = 0, o = 0; k < b.n; k++, o += 9) {
        var p = ps[k], n = bs[k], fi = fis[k], fn = fns[k], svc = ix[o + 3], why = ix[o + 5];
        if (svc < 0) {
          var t = data.svc.t[-1 - svc];
          svc = svcCell(t, e, at);
          at += 4 * (t[3].length - 1);
        }
        if (why < 0) {
          var w = data.why[-1 - why];
          why = whyCell(w, ix[o + w[0]]);
        }
        out.push([ix[o], ix[o + 1], ix[o + 2], svc, ix[o + 4], why, ix[o + 6],
          [num(p), p], n >= 1024 ? [fmtBytes(n), n, num(n) + " bytes"] : [String(n) + " B", n],
          tsCell(micros(t0[k], b.t0x, k)), tsCell(micros(t1[k], b.t1x, k)),
          b.frame ? b.frame[k] : [(data.multiInput ? fi + ":#" : "#") + fn, fi * 1e12 + fn, ix[o + 8]], ix[o + 7]]);
      }
    });
    return out;
  }
  data.flows = flowRecords(data.flows);
  function cellOf(c) { return typeof c === "number" ? SHARED[c] : c; }
  function sortKey(c) { return c.length > 1 && c[1] !== null ? c[1] : c[0]; }
  function titleOf(c) {
    var t = c[2];
    return t === true ? c[1] : typeof t === "number" ? SHARED[t][0] : t || "";
  }
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    return collator.compare(String(a), String(b));
  }

  var searchCache = {flow: {}, rule: {}, host: {}};
  function records(kind) { return kind === "flow" ? data.flows : data[kind]; }
  function searchText(kind, i) {
    var c = searchCache[kind];
    if (c[i] === undefined) {
      var parts = [];
      records(kind)[i].forEach(function (raw) {
        var cell = cellOf(raw);
        parts.push(cell[0], titleOf(cell));
        (cell[4] || []).forEach(function (line) { parts.push(line); });
      });
      c[i] = parts.join("\u0001").toLowerCase();
    }
    return c[i];
  }

  function Table(root) {
    this.root = root;
    this.id = root.getAttribute("data-table");
    this.spec = data.tables[this.id];
    this.recs = records(this.spec.kind);
    this.table = root.querySelector("table");
    this.tbody = this.table.tBodies[0];
    this.info = root.querySelector(".pager-info");
    this.prev = root.querySelector(".prev");
    this.next = root.querySelector(".next");
    this.filterBox = root.querySelector(".filter");
    this.more = root.querySelector(".print-more");
    this.printRows = Number(root.getAttribute("data-print-rows")) || 0;
    this.view = this.spec.rows.slice();
    this.page = 0;
    this.sortCol = null;
    this.sortDir = 1;
    this.printing = false;
    var self = this, timer = null;
    root.querySelector(".controls").hidden = false;
    this.filterBox.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { self.applyFilter(); }, self.spec.rows.length > 5000 ? 200 : 0);
    });
    this.prev.addEventListener("click", function () { self.page -= 1; self.render(); });
    this.next.addEventListener("click", function () { self.page += 1; self.render(); });
    Array.prototype.forEach.call(this.table.tHead.rows[0].cells, function (th) {
      th.tabIndex = 0;
      var go = function () { self.sortBy(th.getAttribute("data-key"), th); };
      th.addEventListener("click", go);
      th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
    });
  }
  Table.prototype.applyFilter = function () {
    var kind = this.spec.kind, terms = this.filterBox.value.toLowerCase().split(/\s+/).filter(Boolean);
    this.view = terms.length ? this.spec.rows.filter(function (i) {
      var text = searchText(kind, i);
      return terms.every(function (t) { return text.indexOf(t) >= 0; });
    }) : this.spec.rows.slice();
    if (this.sortCol) { this.sortRows(); }
    this.page = 0;
    this.render();
  };
  Table.prototype.sortBy = function (key, th) {
    this.sortDir = this.sortCol === key ? -this.sortDir : 1;
    this.sortCol = key;
    Array.prototype.forEach.call(this.table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", this.sortDir > 0 ? "ascending" : "descending");
    this.sortRows();
    this.page = 0;
    this.render();
  };
  Table.prototype.sortRows = function () {
    var at = data.cols[this.spec.kind].indexOf(this.sortCol), recs = this.recs, dir = this.sortDir, keys = {};
    this.view.forEach(function (i) { keys[i] = sortKey(cellOf(recs[i][at])); });
    var pos = {};
    this.spec.rows.forEach(function (i, n) { pos[i] = n; });
    this.view.sort(function (a, b) { return dir * compare(keys[a], keys[b]) || pos[a] - pos[b]; });
  };
  Table.prototype.render = function () {
    var pages = Math.max(1, Math.ceil(this.view.length / PAGE));
    this.page = Math.min(Math.max(this.page, 0), pages - 1);
    // Printed: the first rows in view (sorted and filtered as on screen), the rest counted below.
    var start = this.printing ? 0 : this.page * PAGE;
    var end = Math.min(this.view.length, this.printing ? this.printRows : start + PAGE);
    var cols = this.spec.cols, order = data.cols[this.spec.kind], hide = this.spec.hide;
    var at = cols.map(function (k) { return order.indexOf(k); }), frag = document.createDocumentFragment();
    var classes = data.classes[this.spec.kind];
    for (var n = start; n < end; n++) {
      var rec = this.recs[this.view[n]], tr = document.createElement("tr");
      for (var c = 0; c < cols.length; c++) {
        var raw = rec[at[c]], v = cellOf(raw), td = document.createElement("td"), sub = v[4] || [];
        var cls = v.length > 3 ? v[3] : typeof raw === "number" ? "" : classes[at[c]];
        // A table of one role's flows leaves out the roles line of that side's host cell.
        if (hide.indexOf(cols[c]) >= 0) { sub = sub.slice(1); }
        if (cls) { td.className = cls; }
        var title = titleOf(v);
        if (title) { td.setAttribute("title", title); }
        td.appendChild(document.createTextNode(v[0]));
        for (var s = 0; s < sub.length; s++) {
          var span = document.createElement("span");
          span.className = "sub";
          span.textContent = sub[s];
          td.appendChild(span);
        }
        tr.appendChild(td);
      }
      frag.appendChild(tr);
    }
    if (end <= start && !(this.printing && this.view.length)) {
      var empty = document.createElement("tr"), etd = document.createElement("td");
      empty.className = "empty";
      etd.colSpan = cols.length;
      etd.textContent = this.spec.rows.length ? "No row matches the filter." : "None.";
      empty.appendChild(etd);
      frag.appendChild(empty);
    }
    this.tbody.replaceChildren(frag);
    var total = this.spec.rows.length, shown = this.view.length;
    var text = shown ? "Rows " + num(start + 1) + "\u2013" + num(end) + " of " + num(shown) : "0 rows";
    if (shown !== total) { text += " (filtered from " + num(total) + ")"; }
    this.info.textContent = text;
    var rest = shown - Math.min(shown, this.printRows), note = "";
    if (shown !== total) {
      note = "Filter \u201c" + this.filterBox.value + "\u201d: " + num(shown) + " of " + num(total) + " rows match" +
        (rest ? ", " + num(rest) + " of them not printed" : "");
    } else if (rest) {
      note = "\u2026 and " + num(rest) + " more rows";
    }
    this.more.textContent = note ? note + " (see the JSON, or this report on screen)" : "";
    this.prev.disabled = this.page === 0;
    this.next.disabled = this.page >= pages - 1;
    this.table.setAttribute("data-visible", String(shown));
    this.root.setAttribute("data-page", String(this.page));
  };

  var tables = {};
  Array.prototype.forEach.call(document.querySelectorAll("div.tbl[data-table]"), function (el) {
    var t = new Table(el);
    tables[t.id] = t;
    t.render();
  });

  var reopen = [];
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details:not([open])"), function (d) { d.open = true; reopen.push(d); });
    Object.keys(tables).forEach(function (k) { tables[k].printing = true; tables[k].render(); });
  });
  window.addEventListener("afterprint", function () {
    reopen.forEach(function (d) { d.open = false; });
    reopen = [];
    Object.keys(tables).forEach(function (k) { tables[k].printing = false; tables[k].render(); });
  });
  window.pcapAuditTables = tables;
  document.body.setAttribute("data-ready", "1");
}());
