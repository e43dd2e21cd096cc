/* pcap-audit report: pages, sorts and filters the tables from the JSON block.
   Cells are built exactly as auditor/report/html.py's _cell functions build the first page.
   Data is only ever inserted with textContent / setAttribute: never as markup. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("audit-data").textContent);
  var L = data.lists;  // interned name and role lists; flow records hold their indexes
  var PAGE = data.pageSize, MAXC = data.displayChars;
  // Field positions of the compact records (html.py: F_*, R_*, H_*).
  var F = {V: 0, I: 1, IN: 2, IR: 3, R: 4, RN: 5, RR: 6, PROTO: 7, PORT: 8, OUT: 9, RULES: 10, REASON: 11,
    RTEXT: 12, CONN: 13, EST: 14, REJ: 15, UNANS: 16, STATES: 17, PK: 18, B: 19, FS: 20, LS: 21, FIN: 22,
    FFR: 23, DIR: 24, INF: 25, SUM: 26, REV: 27, REF: 28};
  var R = {STATUS: 0, ID: 1, PRODUCT: 2, SRC: 3, DST: 4, PROTOS: 5, PORTS: 6, DESC: 7, NOTE: 8, FLOWS: 9, LACK: 10,
    LAYER: 11, COVERED: 12, CITE: 13};
  var NOT_TEXT = [F.IN, F.IR, F.RN, F.RR, F.FIN, F.INF, F.SUM];
  var SEV = {failing: 0, unexpected: 1, expected: 2, unmapped: 3};
  var RSEV = {failing: 0, missing: 1, observed: 2, covered: 3, "not-observable": 4, "not-applicable": 5};
  var collator = new Intl.Collator("en", {numeric: true, sensitivity: "base"});

  function short(s) {
    if (s.length <= MAXC) { return s; }
    var a = Array.from(s);
    return a.length <= MAXC ? s : a.slice(0, MAXC - 1).join("") + "\u2026";
  }
  function num(n) { return n === null || n === undefined ? "" : String(Math.trunc(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function bytes(n) {
    if (n === null || n === undefined) { return ""; }
    var v = n, unit = "B", units = ["KiB", "MiB", "GiB", "TiB"];
    for (var i = 0; i < units.length && v >= 1024; i++) { v = v / 1024; unit = units[i]; }
    if (unit === "B") { return Math.trunc(n) + " B"; }
    return (Math.floor(v * 10 + 0.5) / 10).toFixed(1) + " " + unit;
  }
  function ts(s) { return s ? s.slice(0, 19).replace("T", " ") : ""; }
  function cell(text, title, sub, cls) { return {t: text, title: title || "", sub: sub || [], cls: cls || ""}; }

  function hostCell(addr, names, roles, showRoles) {
    var sub = [];
    if (showRoles) { sub.push(roles.length ? short(roles.join(", ")) : data.noRole); }
    if (names.length) { sub.push(short(names[0]) + (names.length > 1 ? " (+" + (names.length - 1) + " more)" : "")); }
    return cell(short(addr), names.join("\n"), sub, "host");
  }
  function ruleText(id) { return data.rules[id] || ["", "", "document"]; }
  // As html.py's rule_caption: a rule matched only as bidirectional is not captioned by its wording.
  function ruleCaption(id, reverse) {
    var t = ruleText(id), layer = t[2] && t[2] !== "document" ? " [" + t[2] + "]" : "";
    if (reverse) { return id + layer + " \u2014 the same service, opened from the other side (bidirectional rule)"; }
    return id + layer + " \u2014 " + t[0];
  }

  var flowCell = {
    verdict: function (r) { return cell(r[F.V], "", [], "v-" + r[F.V]); },
    init: function (r, hide) { return hostCell(r[F.I], L[r[F.IN]], L[r[F.IR]], hide.indexOf("init") < 0); },
    resp: function (r, hide) { return hostCell(r[F.R], L[r[F.RN]], L[r[F.RR]], hide.indexOf("resp") < 0); },
    svc: function (r) { return cell(r[F.PROTO] + (r[F.PORT] === null ? "" : "/" + r[F.PORT]), "", [], "svc"); },
    outcome: function (r) { return cell(r[F.OUT], r[F.REF], r[F.REF] ? [short(r[F.REF])] : [], "o-" + r[F.OUT]); },
    why: function (r) {
      if (r[F.RULES].length) {
        var lines = r[F.RULES].map(function (id) { return ruleCaption(id, (r[F.REV] || []).indexOf(id) >= 0); });
        var notes = r[F.RULES].map(function (id) { return ruleText(id)[1]; })
          .filter(function (n, k, all) { return n && all.indexOf(n) === k; });
        var full = lines.join("; ");
        return cell(short(full), [full].concat(notes).join("\n"), notes.map(function (n) { return short("Note: " + n); }));
      }
      var text = r[F.RTEXT] || r[F.REASON];
      return cell(short(text), text, r[F.RTEXT] && r[F.REASON] ? [r[F.REASON]] : []);
    },
    conns: function (r) {
      var title = "established " + r[F.EST] + ", rejected " + r[F.REJ] + ", unanswered " + r[F.UNANS] +
        (r[F.STATES] ? "; states " + r[F.STATES] : "");
      return cell(num(r[F.CONN]), title, [], "n");
    },
    packets: function (r) { return cell(num(r[F.PK]), "", [], "n"); },
    bytes: function (r) { return cell(bytes(r[F.B]), num(r[F.B]) + " bytes", [], "n"); },
    first: function (r) { return cell(ts(r[F.FS]), r[F.FS] || ""); },
    last: function (r) { return cell(ts(r[F.LS]), r[F.LS] || ""); },
    frame: function (r) {
      if (r[F.FFR] === null) { return cell(""); }
      var prefix = data.inputs.length > 1 ? r[F.FIN] + ":" : "";
      var path = data.inputs[r[F.FIN]] !== undefined ? data.inputs[r[F.FIN]] : "?";
      return cell(prefix + "#" + r[F.FFR], "input " + r[F.FIN] + " (" + path + "), frame " + r[F.FFR], [], "n");
    },
    dir: function (r) { return cell(r[F.DIR], "", r[F.INF] ? ["inferred"] : [], r[F.INF] ? "dir inferred" : "dir"); }
  };
  var ruleCell = {
    status: function (r) { return cell(r[R.STATUS], "", [], "s-" + r[R.STATUS]); },
    rule: function (r) {
      var sub = r[R.PRODUCT] ? [short(r[R.PRODUCT])] : [];
      if (r[R.LAYER] && r[R.LAYER] !== "document") { sub.push(r[R.LAYER]); }
      return cell(r[R.ID], r[R.CITE] || "", sub);
    },
    pair: function (r) { var p = r[R.SRC] + " \u2192 " + r[R.DST]; return cell(short(p), p); },
    rsvc: function (r) { return cell(short((r[R.PROTOS].join(", ") + " " + r[R.PORTS]).trim())); },
    desc: function (r) {
      return cell(short(r[R.DESC]), [r[R.DESC], r[R.NOTE]].filter(Boolean).join("\n"),
        r[R.NOTE] ? [short("Note: " + r[R.NOTE])] : []);
    },
    lacking: function (r) {
      if (r[R.STATUS] === "covered" && r[R.COVERED] && r[R.COVERED].length) {
        var c = "covered by " + r[R.COVERED].join(", ");
        return cell(short(c), c);
      }
      var f = r[R.LACK].join(", "); return cell(short(f), f);
    },
    rflows: function (r) { return cell(num(r[R.FLOWS]), "", [], "n"); }
  };
  var hostTableCell = {
    addr: function (r) { return cell(r[0]); },
    roles: function (r) { var f = r[1].join(", "); return cell(short(f), f); },
    names: function (r) { var f = r[2].join(", "); return cell(short(f), f); }
  };
  var cells = {flow: flowCell, rule: ruleCell, host: hostTableCell};

  var sortKey = {
    flow: {
      verdict: function (r) { return SEV[r[F.V]]; },
      init: function (r) { return r[F.I]; }, resp: function (r) { return r[F.R]; },
      svc: function (r) { return (r[F.PORT] === null ? -1 : r[F.PORT]) * 4 + ["tcp", "udp", "icmp"].indexOf(r[F.PROTO]); },
      outcome: function (r) { return r[F.OUT]; },
      why: function (r) { return r[F.RULES].length ? r[F.RULES].join(" ") : (r[F.RTEXT] || r[F.REASON]); },
      conns: function (r) { return r[F.CONN]; }, packets: function (r) { return r[F.PK]; },
      bytes: function (r) { return r[F.B]; }, first: function (r) { return r[F.FS] || ""; },
      last: function (r) { return r[F.LS] || ""; },
      frame: function (r) { return (r[F.FIN] || 0) * 1e12 + (r[F.FFR] || 0); },
      dir: function (r) { return r[F.DIR] + (r[F.INF] ? " inferred" : ""); }
    },
    rule: {
      status: function (r) { return RSEV[r[R.STATUS]]; }, rule: function (r) { return r[R.ID]; },
      pair: function (r) { return r[R.SRC] + " " + r[R.DST]; },
      rsvc: function (r) { return r[R.PROTOS].join(",") + " " + r[R.PORTS]; },
      desc: function (r) { return r[R.DESC]; }, lacking: function (r) { return r[R.LACK].length; },
      rflows: function (r) { return r[R.FLOWS]; }
    },
    host: {
      addr: function (r) { return r[0]; }, roles: function (r) { return r[1].join(", "); },
      names: function (r) { return r[2].join(", "); }
    }
  };
  function compare(a, b) {
    if (typeof a === "number" && typeof b === "number") { return a - b; }
    if (a === undefined || a === null) { return b === undefined || b === null ? 0 : 1; }
    if (b === undefined || b === null) { return -1; }
    return collator.compare(String(a), String(b));
  }

  var searchCache = {flow: {}, rule: {}, host: {}};
  function flatten(v, out) {
    if (Array.isArray(v)) { v.forEach(function (x) { flatten(x, out); }); } else if (v !== null && v !== undefined) { out.push(String(v)); }
    return out;
  }
  function records(kind) { return kind === "flow" ? data.flows : data[kind]; }
  function searchText(kind, i) {
    var c = searchCache[kind];
    if (c[i] === undefined) {
      var rec = records(kind)[i], parts;
      if (kind !== "flow") {
        parts = flatten(rec, []);
      } else {
        // Interned list indexes and flags are not text a person would search for.
        parts = flatten(rec.filter(function (v, n) { return NOT_TEXT.indexOf(n) < 0; }), []);
        parts = parts.concat(L[rec[F.IN]], L[rec[F.IR]], L[rec[F.RN]], L[rec[F.RR]]);
        rec[F.RULES].forEach(function (id) { parts.push(ruleText(id)[0]); });
        parts.push(rec[F.PROTO] + "/" + rec[F.PORT]);
        if (rec[F.INF]) { parts.push("inferred"); }
      }
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
    var fn = sortKey[this.spec.kind][this.sortCol], recs = this.recs, dir = this.sortDir, keys = {};
    this.view.forEach(function (i) { keys[i] = fn(recs[i]); });
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
    var cols = this.spec.cols, build = cells[this.spec.kind], hide = this.spec.hide, frag = document.createDocumentFragment();
    for (var n = start; n < end; n++) {
      var rec = this.recs[this.view[n]], tr = document.createElement("tr");
      for (var c = 0; c < cols.length; c++) {
        var v = build[cols[c]](rec, hide), td = document.createElement("td");
        if (v.cls) { td.className = v.cls; }
        if (v.title) { td.setAttribute("title", v.title); }
        td.appendChild(document.createTextNode(v.t));
        for (var s = 0; s < v.sub.length; s++) {
          var span = document.createElement("span");
          span.className = "sub";
          span.textContent = v.sub[s];
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
