// logferry console: the pages' behaviour. Plain JavaScript, no framework, no build step.
// Every log line is data: it is put in the page with textContent, never as HTML.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const csrf = () => $('meta[name="csrf-token"]').content;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

async function api(method, url, body, signal) {
  const opts = { method, headers: { "Accept": "application/json" }, credentials: "same-origin", signal };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf();
  const resp = await fetch(url, opts);
  if (resp.status === 401) { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
  let data = null;
  try { data = await resp.json(); } catch (e) { data = { error: `${resp.status} ${resp.statusText}` }; }
  return { status: resp.status, data };
}

const fmtBytes = (n) => {
  if (n === null || n === undefined) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (Math.abs(n) >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return i ? `${n.toFixed(1)} ${u[i]}` : `${n} B`;
};
const fmtCount = (n) => (n ?? 0).toLocaleString("en-US");

// ---------------------------------------------------------------- search and live tail

const STATE_KEYS = ["q", "range", "from", "to", "topic", "host", "file"];

function readState() {
  const u = new URLSearchParams(location.search);
  const s = {};
  for (const k of STATE_KEYS) if (u.get(k)) s[k] = u.get(k);
  if (!s.from && !s.to && !s.range) s.range = "1h";
  s.live = u.get("live") === "1";
  return s;
}

function stateQuery(s, extra = {}) {
  const u = new URLSearchParams();
  for (const k of STATE_KEYS) if (s[k]) u.set(k, s[k]);
  if (s.live) u.set("live", "1");
  for (const [k, v] of Object.entries(extra)) u.set(k, v);
  return u.toString();
}

function pushState(s) {
  history.pushState(null, "", "/?" + stateQuery(s));
  searchPage.load();
}

// Every search carries this page's id: the console cancels the page's previous search in
// Elasticsearch when a newer one starts, and the page's search when it says it gave up.
const PAGE_ID = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");

function cancelOnServer() {
  // keepalive: the request outlives the page (the tab closing)
  fetch("/api/search/cancel?sid=" + PAGE_ID, { method: "POST", keepalive: true, credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf() } }).catch(() => {});
}

// The words of a query worth marking in the lines: not operators, not field:value terms.
function highlightWords(q) {
  if (!q) return null;
  const words = [];
  for (const m of q.matchAll(/"([^"]+)"|(\S+)/g)) {
    const w = (m[1] || m[2] || "").replace(/[()~^*?\\]/g, "").trim();
    if (!w || /^(AND|OR|NOT|\d+)$/.test(w) || (m[2] && m[2].includes(":")) || w.startsWith("-") || w.startsWith("/")) continue;
    words.push(w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  }
  return words.length ? new RegExp("(" + words.join("|") + ")", "ig") : null;
}

// Text with the matches in <mark>: built from text nodes, never from HTML.
function markText(parent, text, re) {
  if (!re || text.length > 20000) { parent.append(text); return; }
  let last = 0;
  re.lastIndex = 0;
  for (const m of text.matchAll(re)) {
    if (!m[0]) break;
    if (m.index > last) parent.append(text.slice(last, m.index));
    parent.append(el("mark", {}, m[0]));
    last = m.index + m[0].length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

// A virtual list: the lines are data (this.lines, newest first); only the rows in and near the
// viewport are elements. A folded row is one line of ROW_H pixels; an unfolded one is measured.
const FOLD_AT = 160;  // characters: a longer line (or one with a newline) gets a fold toggle

const searchPage = {
  state: null, after: null, source: null, lines: [], total: 0, MAX_LINES: 100000, saved: [], inflight: null,
  ROW_H: 22, OVERSCAN: 12, unfolded: new Map(), offsets: null, sel: -1, rendered: new Map(), loading: false,
  more: false, hl: null, drawn: "", opened: null,

  init() {
    const form = $("#query");
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const s = { ...this.state, q: $("#q").value.trim() };
      const r = $("#range").value;
      if (r) { s.range = r; delete s.from; delete s.to; }
      else { s.from = $("#from").value.trim(); s.to = $("#to").value.trim(); delete s.range; }
      pushState(s);
    });
    $("#range").addEventListener("change", () => {
      document.body.classList.toggle("absolute", !$("#range").value);
      if ($("#range").value) form.requestSubmit();
    });
    $("#live").addEventListener("click", () => this.toggleLive());
    $("#older").addEventListener("click", () => this.fetch(true));
    $("#save-search").addEventListener("click", () => this.save());
    // An export is a download the browser streams to disk; each click gets its own id, and the
    // page shows how many of the query's lines the console has written so far.
    for (const id of ["#export-ndjson", "#export-csv"]) {
      $(id).addEventListener("click", (ev) => {
        const eid = "x" + PAGE_ID.slice(0, 8) + Date.now().toString(36);
        const url = new URL(ev.currentTarget.href, location.href);
        url.searchParams.set("eid", eid);
        ev.currentTarget.href = url.pathname + url.search;
        this.watchExport(eid);
      });
    }
    $("#saved").addEventListener("change", () => {
      const pick = this.saved.find((x) => x.name === $("#saved").value);
      $("#delete-search").hidden = !pick;
      this.opened = pick ? { name: pick.name, revision: pick.revision } : null;
      if (pick) pushState({ ...pick.state, live: false });
    });
    $("#delete-search").addEventListener("click", async () => {
      const pick = this.saved.find((x) => x.name === $("#saved").value);
      if (!pick || !confirm(`Delete the saved search "${pick.name}" for everyone?`)) return;
      const { status, data } = await api("DELETE", "/api/searches/" + encodeURIComponent(pick.name), { revision: pick.revision });
      $("#tools-msg").textContent = status === 200 ? `deleted "${pick.name}"` : data.error;
      this.loadSaved();
    });
    this.loadSaved();
    $("#context-close").addEventListener("click", () => $("#context").close());
    const vp = $("#viewport");
    vp.addEventListener("scroll", () => this.schedule(), { passive: true });
    window.addEventListener("resize", () => this.schedule());
    $("#rows").addEventListener("click", (ev) => {
      const row = ev.target.closest(".row");
      if (!row) return;
      const i = Number(row.dataset.index);
      if (ev.target.closest(".fold")) { this.fold(i); return; }
      this.select(i);
      this.context(this.lines[i]);
    });
    window.addEventListener("popstate", () => this.load());
    // The tab closing: the search it waits for is of no use any more.
    window.addEventListener("pagehide", () => { if (this.inflight) cancelOnServer(); });
    keyboard.init(this);
    this.load();
  },

  load() {
    this.state = readState();
    const s = this.state;
    $("#q").value = s.q || "";
    $("#range").value = s.range || "";
    $("#from").value = s.from || "";
    $("#to").value = s.to || "";
    document.body.classList.toggle("absolute", !s.range);
    $("#live").setAttribute("aria-pressed", s.live ? "true" : "false");
    $("#live").textContent = s.live ? "Live: on (pause)" : "Live";
    $("#export-ndjson").href = "/api/export?" + stateQuery({ ...s, live: false }, { format: "ndjson" });
    $("#export-csv").href = "/api/export?" + stateQuery({ ...s, live: false }, { format: "csv" });
    const chips = $("#filters"); chips.replaceChildren();
    for (const k of ["topic", "host", "file"]) {
      if (!s[k]) continue;
      chips.append(el("span", { class: "chip", "data-filter": k }, `${k}: ${s[k]} `,
        el("button", { class: "link", title: "remove this filter", onclick: () => { const n = { ...s }; delete n[k]; pushState(n); } }, "×")));
    }
    this.hl = highlightWords(s.q);
    this.fetch(false);
    this.live(s.live);
  },

  toggleLive() { pushState({ ...this.state, live: !this.state.live }); },

  async loadSaved() {
    const { status, data } = await api("GET", "/api/searches");
    if (status !== 200) return;
    this.saved = data.searches;
    const sel = $("#saved");
    const was = sel.value;
    sel.replaceChildren(el("option", { value: "" }, "Saved searches…"));
    for (const x of this.saved) sel.append(el("option", { value: x.name, title: `by ${x.saved_by}, ${x.saved_at}` }, x.name));
    if (was && this.saved.some((x) => x.name === was)) sel.value = was;
  },

  async save() {
    const opened = this.opened;
    const name = (prompt("Name of this search (shared with everyone who uses the console):", opened ? opened.name : "") || "").trim();
    if (!name) return;
    const state = {};
    for (const k of STATE_KEYS) if (this.state[k]) state[k] = this.state[k];
    // Saving the search that was opened replaces the version opened, and only that one: if someone
    // changed it meanwhile, etcd's compare-and-swap refuses and the page says so.
    const revision = opened && opened.name === name ? opened.revision : 0;
    let { status, data } = await api("PUT", "/api/searches/" + encodeURIComponent(name), { state, revision });
    if (status === 409 && revision === 0 && !data.conflict && confirm(`"${name}" exists already. Replace it?`)) {
      ({ status, data } = await api("PUT", "/api/searches/" + encodeURIComponent(name), { state, revision: data.revision }));
    }
    const msg = $("#tools-msg");
    msg.className = status === 200 ? "ok" : "bad";
    msg.textContent = status === 200 ? `saved as "${name}"` : data.error;
    if (status === 200) this.opened = { name, revision: data.revision };
    await this.loadSaved();
    if (status === 200) $("#saved").value = name;
  },

  async watchExport(eid) {
    const msg = $("#tools-msg");
    const total = this.total;
    msg.className = "ok";
    msg.textContent = "export: starting…";
    let unknownSince = performance.now();
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      const { status, data } = await api("GET", "/api/export/progress?eid=" + encodeURIComponent(eid));
      if (status === 404) {
        if (performance.now() - unknownSince > 15000) { msg.className = "bad"; msg.textContent = "export: the console never started it"; return; }
        continue;
      }
      unknownSince = performance.now();
      if (status !== 200) { msg.className = "bad"; msg.textContent = `export: ${data.error}`; return; }
      const of = total ? ` of ${fmtCount(total)} (${Math.min(100, Math.floor(100 * data.lines / total))}%)` : "";
      msg.textContent = data.done ? `export done: ${fmtCount(data.lines)} lines` : `export: ${fmtCount(data.lines)}${of} lines written…`;
      msg.dataset.exportLines = String(data.lines);
      if (data.done) return;
    }
  },

  async fetch(older) {
    if (older && (!this.after || this.loading)) return;
    const extra = { sid: PAGE_ID };
    if (older) { extra.after = JSON.stringify(this.after); extra.size = "2000"; }
    const t0 = performance.now();
    // A newer query makes the one in flight useless: abort it, so its answer never overwrites; the
    // console cancels it in Elasticsearch when this newer one (same page id) arrives.
    if (this.inflight) this.inflight.abort();
    const ctl = new AbortController(); this.inflight = ctl;
    this.loading = true;
    if (!older) { $("#summary").textContent = "searching…"; $("#summary").dataset.state = "searching"; }
    let status, data;
    try {
      ({ status, data } = await api("GET", "/api/search?" + stateQuery(this.state, extra), undefined, ctl.signal));
    } catch (e) {
      if (e.name === "AbortError") return;
      throw e;
    } finally {
      if (this.inflight === ctl) { this.inflight = null; this.loading = false; }
    }
    if (ctl.signal.aborted) return;
    const problem = $("#problem");
    if (status !== 200) {
      problem.hidden = false; problem.textContent = data.error || `error ${status}`;
      if (!older) { $("#summary").textContent = "no results"; $("#summary").dataset.state = "error"; }
      return;
    }
    problem.hidden = true;
    if (data.timed_out) {
      problem.hidden = false;
      problem.textContent = `Elasticsearch stopped this search after ${data.timeout_s} s (search_timeout_s): the results are partial. Narrow the time range or the query.`;
    }
    if (!older) {
      this.lines = []; this.unfolded.clear(); this.sel = -1; this.total = data.total; $("#viewport").scrollTop = 0;
      $("#rows").replaceChildren(); this.rendered = new Map();  // the marks may differ: rows made anew
    }
    for (const line of data.hits) this.lines.push(line);
    if (this.lines.length > this.MAX_LINES) this.lines.length = this.MAX_LINES;
    this.after = data.hits.length ? data.hits[data.hits.length - 1].sort : null;
    this.more = Boolean(data.hits.length && this.lines.length < this.total && this.lines.length < this.MAX_LINES);
    $("#older").hidden = !this.more;
    $("#hits").dataset.loaded = this.lines.length;
    this.changed();
    if (!older) {
      const rel = data.total_relation === "gte" ? "at least " : "";
      $("#summary").textContent = `${rel}${fmtCount(data.total)} line${data.total === 1 ? "" : "s"} · newest first · ${Math.round(performance.now() - t0)} ms` +
        (data.note ? ` · ${data.note}` : "") + (data.timed_out ? " · partial: Elasticsearch timed out" : "");
      $("#summary").dataset.total = data.total;
      $("#summary").dataset.state = "done";
      this.histogram(data.histogram);
      this.facets(data.facets);
    }
  },

  // --- the virtual list

  changed() { this.offsets = null; this.drawn = ""; this.schedule(); },

  layout() {
    // offsets[i]: the top of line i; offsets[n]: the height of them all. O(n), only after a change.
    const n = this.lines.length, o = new Float64Array(n + 1), H = this.ROW_H;
    if (!this.unfolded.size) { for (let i = 0; i <= n; i++) o[i] = i * H; }
    else { for (let i = 0; i < n; i++) o[i + 1] = o[i] + (this.unfolded.get(this.lines[i].id) || H); }
    this.offsets = o;
    $("#rows").style.height = o[n] + "px";
  },

  indexAt(y) {
    const o = this.offsets; let lo = 0, hi = this.lines.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (o[mid] <= y) lo = mid; else hi = mid - 1; }
    return Math.max(0, lo);
  },

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = null; this.render(); });
  },

  render() {
    if (!this.offsets) this.layout();
    const vp = $("#viewport"), n = this.lines.length, o = this.offsets;
    const top = vp.scrollTop, bottom = top + vp.clientHeight;
    const first = n ? Math.max(0, this.indexAt(top) - this.OVERSCAN) : 0;
    const last = n ? Math.min(n - 1, this.indexAt(bottom) + this.OVERSCAN) : -1;
    const key = `${first}:${last}:${this.sel}`;
    if (key !== this.drawn) {
      this.drawn = key;
      // Rows are placed absolutely at their offsets: scrolling adds the rows coming into view and
      // removes those leaving it; the others are not touched (no reflow of the whole list).
      const box = $("#rows");
      const keep = new Map(), added = [];
      for (let i = first; i <= last; i++) {
        const line = this.lines[i];
        let row = this.rendered.get(line.id);
        if (!row || row.dataset.index !== String(i)) { row = this.row(line, i); added.push(row); }
        const y = o[i] + "px";
        if (row.style.top !== y) row.style.top = y;
        const sel = i === this.sel;
        if (row.classList.contains("sel") !== sel) row.classList.toggle("sel", sel);
        keep.set(line.id, row);
      }
      for (const [id, row] of this.rendered) if (keep.get(id) !== row) row.remove();
      if (added.length) box.append(...added);
      this.rendered = keep;
      // an unfolded row's height is what the browser makes of it: measure, then lay out again
      let moved = false;
      for (const row of keep.values()) {
        if (!row.classList.contains("open")) continue;
        const h = row.offsetHeight, id = row.dataset.id;
        if (Math.abs((this.unfolded.get(id) || 0) - h) > 0.5) { this.unfolded.set(id, h); moved = true; }
      }
      if (moved) { this.offsets = null; this.drawn = ""; this.schedule(); }
      const hits = $("#hits");
      if (hits.dataset.rows !== String(keep.size)) hits.dataset.rows = keep.size;
    }
    // near the end of what is loaded: the next older page (not while following live)
    if (this.more && !this.state.live && !this.loading && last >= n - 200) this.fetch(true);
  },

  row(line, i) {
    const msg = line.message || "";
    const long = msg.length > FOLD_AT || msg.includes("\n");
    const open = this.unfolded.has(line.id);
    const m = el("span", { class: "msg" });
    if (long) m.append(el("button", { class: "fold", title: open ? "fold (f)" : "unfold (f)", "aria-expanded": open ? "true" : "false" }, open ? "▾" : "▸"), " ");
    if (line.flags && line.flags.length) m.append(el("span", { class: "flag" }, line.flags.join(" ")), " ");
    markText(m, msg, this.hl);
    const row = el("div", { class: "row" + (open ? " open" : "") + (line.isNew ? " new" : ""), "data-id": line.id, "data-index": i, role: "row" },
      el("span", { class: "ts" }, (line.ts || "").replace("T", " ").replace("Z", "")),
      el("span", { class: "host" }, line.host || line.ip || ""),
      el("span", { class: "file", title: line.file || "" }, (line.file || "").split("/").pop()),
      m);
    return row;
  },

  fold(i) {
    const line = this.lines[i];
    if (!line) return;
    if (this.unfolded.has(line.id)) this.unfolded.delete(line.id); else this.unfolded.set(line.id, this.ROW_H);
    const old = this.rendered.get(line.id);
    if (old) { old.remove(); this.rendered.delete(line.id); }
    this.changed();
  },

  select(i) {
    if (!this.lines.length) return;
    this.sel = Math.max(0, Math.min(this.lines.length - 1, i));
    if (!this.offsets) this.layout();
    const vp = $("#viewport"), top = this.offsets[this.sel], bottom = this.offsets[this.sel + 1];
    if (top < vp.scrollTop) vp.scrollTop = top;
    else if (bottom > vp.scrollTop + vp.clientHeight) vp.scrollTop = bottom - vp.clientHeight;
    $("#hits").dataset.selected = this.sel;
    this.drawn = "";
    this.schedule();
  },

  async context(line) {
    if (!line) return;
    const { status, data } = await api("GET", `/api/context?index=${encodeURIComponent(line.index)}&id=${encodeURIComponent(line.id)}&size=10`);
    const pre = $("#context-lines"); pre.replaceChildren();
    $("#context-where").textContent = `${line.host || line.ip} ${line.file}`;
    if (status !== 200) { pre.textContent = data.error; $("#context").showModal(); return; }
    const add = (l, cls) => pre.append(el("div", { class: cls, "data-offset": l.offset }, el("span", { class: "off" }, String(l.offset).padStart(9)), " ", l.message));
    data.before.forEach((l) => add(l, "ctx"));
    add(data.line, "ctx this");
    data.after.forEach((l) => add(l, "ctx"));
    if (!$("#context").open) $("#context").showModal();
    pre.querySelector(".this").scrollIntoView({ block: "center" });
  },

  histogram(h) {
    const box = $("#histogram"); box.replaceChildren();
    const b = h.buckets || [];
    if (!b.length) return;
    const max = Math.max(1, ...b.map((x) => x[1]));
    const ns = "http://www.w3.org/2000/svg";
    const W = 1000, H = 80, w = W / b.length;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H + 14}`); svg.setAttribute("preserveAspectRatio", "none");
    b.forEach(([t, n], i) => {
      const r = document.createElementNS(ns, "rect");
      const hh = n ? Math.max(1.5, (n / max) * H) : 0;
      r.setAttribute("x", i * w + 0.5); r.setAttribute("width", Math.max(0.5, w - 1));
      r.setAttribute("y", H - hh); r.setAttribute("height", hh);
      r.setAttribute("data-count", n); r.setAttribute("data-t", t);
      const title = document.createElementNS(ns, "title"); title.textContent = `${new Date(t).toISOString()}: ${n} lines`;
      r.append(title);
      svg.append(r);
    });
    const label = (x, t, anchor) => {
      const tx = document.createElementNS(ns, "text"); tx.setAttribute("x", x); tx.setAttribute("y", H + 12);
      tx.setAttribute("text-anchor", anchor); tx.textContent = new Date(t).toISOString().slice(5, 16).replace("T", " "); svg.append(tx);
    };
    label(2, b[0][0], "start"); label(W - 2, b[b.length - 1][0], "end");
    const step = b.length > 1 ? b[1][0] - b[0][0] : 60000;
    let start = null;
    const at = (ev) => { const r = svg.getBoundingClientRect(); return Math.min(b.length - 1, Math.max(0, Math.floor((ev.clientX - r.left) / r.width * b.length))); };
    svg.addEventListener("mousedown", (ev) => { start = at(ev); ev.preventDefault(); });
    svg.addEventListener("mouseup", (ev) => {
      if (start === null) return;
      const a = Math.min(start, at(ev)), z = Math.max(start, at(ev)); start = null;
      const s = { ...this.state, from: new Date(b[a][0]).toISOString(), to: new Date(b[z][0] + step).toISOString() };
      delete s.range; pushState(s);
    });
    box.append(svg);
  },

  facets(f) {
    for (const k of ["topic", "host", "file"]) {
      const ul = $(`#facet-${k}`); ul.replaceChildren();
      for (const [name, n] of f[k] || []) {
        const a = el("a", { href: "?" + stateQuery({ ...this.state, [k]: name }), "data-value": name }, k === "file" ? name.split("/").pop() : name);
        a.title = name;
        a.addEventListener("click", (ev) => { ev.preventDefault(); pushState({ ...this.state, [k]: name }); });
        ul.append(el("li", {}, a, el("span", { class: "count" }, fmtCount(n))));
      }
      if (!ul.children.length) ul.append(el("li", { class: "none" }, "—"));
    }
    // Parsed fields (docs/parsing.md) that lines of the result carry: a value adds field:value to
    // the query (an exact term, as logctl reads it too).
    const box = $("#facet-fields"); box.replaceChildren();
    for (const [field, buckets] of f.fields || []) {
      const ul = el("ul", { "data-field": field });
      for (const [value, n] of buckets) {
        const v = String(value);
        const term = `${field}:${/[\s"()]/.test(v) ? JSON.stringify(v) : v}`;
        const q = ((this.state.q || "") + " " + term).trim();
        const a = el("a", { href: "?" + stateQuery({ ...this.state, q }), "data-value": v }, v);
        a.title = term;
        a.addEventListener("click", (ev) => { ev.preventDefault(); pushState({ ...this.state, q }); });
        ul.append(el("li", {}, a, el("span", { class: "count" }, fmtCount(n))));
      }
      box.append(el("section", {}, el("h3", {}, field), ul));
    }
  },

  live(on) {
    if (this.source) { this.source.close(); this.source = null; }
    if (!on) { delete $("#live").dataset.stream; return; }
    const src = new EventSource("/api/tail?" + stateQuery(this.state));
    let batch = [];
    src.onmessage = (ev) => {
      const line = JSON.parse(ev.data); line.isNew = true;
      batch.push(line);
      if (batch.length === 1) requestAnimationFrame(() => this.prepend(batch.splice(0)));
    };
    $("#live").dataset.stream = "opening";
    src.addEventListener("started", () => { $("#live").dataset.stream = "started"; });
    src.addEventListener("problem", (ev) => { $("#problem").hidden = false; $("#problem").textContent = "live tail: " + JSON.parse(ev.data); });
    this.source = src;
  },

  prepend(lines) {
    // the stream sends oldest first; the list is newest first. A reader scrolled down keeps his place.
    const vp = $("#viewport"), added = lines.length;
    this.lines.unshift(...lines.reverse());
    if (this.lines.length > this.MAX_LINES) this.lines.length = this.MAX_LINES;  // a bounded buffer
    if (this.sel >= 0) this.sel += added;
    if (vp.scrollTop > 0) vp.scrollTop += added * this.ROW_H;
    $("#summary").dataset.live = (Number($("#summary").dataset.live || 0) + added);
    $("#hits").dataset.loaded = this.lines.length;
    this.changed();
  },
};

// ---------------------------------------------------------------- keyboard (listed on "?")

const keyboard = {
  init(page) {
    this.page = page;
    document.addEventListener("keydown", (ev) => this.key(ev));
    $("#help-close").addEventListener("click", () => $("#help").close());
    $("#help-open").addEventListener("click", () => $("#help").showModal());
  },
  key(ev) {
    const p = this.page;
    const typing = ev.target.closest && ev.target.closest("input, textarea, select");
    if (ev.key === "Escape" && typing) { ev.target.blur(); return; }
    if (typing || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if ($("#context").open || $("#help").open) return;  // the dialog's own keys (Escape closes it)
    const act = {
      "/": () => { $("#q").focus(); $("#q").select(); },
      "r": () => $("#query").requestSubmit(),
      "j": () => p.select(p.sel + 1), "ArrowDown": () => p.select(p.sel + 1),
      "k": () => p.select(p.sel - 1), "ArrowUp": () => p.select(p.sel - 1),
      "Home": () => p.select(0), "End": () => p.select(p.lines.length - 1),
      "o": () => p.context(p.lines[p.sel]), "Enter": () => p.context(p.lines[p.sel]),
      "f": () => p.fold(p.sel),
      "p": () => p.toggleLive(),
      "?": () => $("#help").showModal(),
    }[ev.key];
    if (!act) return;
    ev.preventDefault();
    act();
  },
};

// ---------------------------------------------------------------- hosts

const hostsPage = {
  async init() {
    const form = $("#new-host");
    if (form) form.addEventListener("submit", (ev) => { ev.preventDefault(); location.href = "/hosts/" + encodeURIComponent($("#new-ip").value.trim()); });
    await this.load();
    setInterval(() => this.load(), 5000);
  },
  async load() {
    const { status, data } = await api("GET", "/api/hosts");
    if (status !== 200) return;
    const body = $("#hosts tbody"); body.replaceChildren();
    for (const h of data.hosts) {
      body.append(el("tr", { "data-ip": h.ip, class: h.live ? "" : "down" },
        el("td", {}, el("a", { href: "/hosts/" + h.ip }, h.ip)),
        el("td", {}, h.live ? "live" : "no agent"),
        el("td", {}, h.hostname || ""), el("td", {}, h.version || ""),
        el("td", {}, h.inputs === null ? "-" : String(h.inputs)),
        el("td", {}, h.config_state), el("td", {}, String((h.files || []).length)),
        el("td", {}, fmtBytes(h.lag_bytes)),
        el("td", { class: "ts", title: "its newest line in Elasticsearch" }, (h.last_line || "").replace("T", " ").replace(/\.\d+Z$/, "")),
        el("td", { class: "err" }, h.last_error || "")));
    }
  },
};

// ---------------------------------------------------------------- editors (collect list, transfer config)

function editor(docUrl, afterSave) {
  const ta = $("#editor");
  let revision = 0, timer = null;
  const check = async () => {
    const { status, data } = await api("POST", docUrl + "/check", { text: ta.value });
    const box = $("#check");
    if (status !== 200) { box.className = "check bad"; box.textContent = data.error; return; }
    box.className = "check " + (data.valid ? "ok" : "bad");
    box.textContent = data.valid ? "valid" + (data.diff ? "" : " · no change") : data.error;
    const diff = $("#diff");
    diff.hidden = !data.diff; diff.textContent = data.diff || "";
  };
  const load = async () => {
    const { data } = await api("GET", docUrl);
    revision = data.revision;
    ta.value = data.text;
    $("#doc-rev").textContent = data.exists ? `revision ${data.revision}` : "(none yet: a template)";
    if (data.error) { $("#check").className = "check bad"; $("#check").textContent = "stored value is invalid: " + data.error; }
    return data;
  };
  if (!ta.readOnly) ta.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 350); });
  const save = $("#save");
  if (save) save.addEventListener("click", async () => {
    const { status, data } = await api("PUT", docUrl, { text: ta.value, revision });
    const out = $("#saved");
    out.className = status === 200 ? "ok" : "bad";
    if (status === 200) {
      out.textContent = data.result === "unchanged" ? "no change: nothing written" : `saved: revision ${data.revision}`;
      revision = data.revision; $("#doc-rev").textContent = `revision ${data.revision}`; $("#diff").hidden = true;
      if (data.result === "written" && afterSave) afterSave(data.revision);
    } else {
      out.textContent = data.error;
    }
  });
  const del = $("#delete");
  if (del) del.addEventListener("click", async () => {
    if (!confirm("Delete this host's collect list? Its agent then collects nothing.")) return;
    const { status, data } = await api("DELETE", docUrl, { revision });
    $("#saved").className = status === 200 ? "ok" : "bad";
    $("#saved").textContent = status === 200 ? "deleted" : data.error;
    if (status === 200) await load();
  });
  return load();
}

const hostPage = {
  async init() {
    this.ip = $("#ip").textContent.trim();
    await this.agent();
    await editor("/api/collect/" + encodeURIComponent(this.ip), (rev) => this.waitApplied(rev));
    setInterval(() => this.agent(), 5000);
  },
  async agent() {
    const { status, data } = await api("GET", "/api/hosts/" + encodeURIComponent(this.ip));
    const panel = $("#agent"); panel.replaceChildren();
    const body = $("#files tbody"); body.replaceChildren();
    if (status !== 200) { panel.textContent = "No agent and no collect list for this IP yet."; return null; }
    panel.append(el("div", {}, el("b", {}, data.live ? "agent live" : "no live agent"),
      ` · ${data.hostname || ""} · version ${data.version || "-"} · config ${data.config_state}`));
    if (data.last_error) panel.append(el("div", { class: "err" }, "last error: " + data.last_error));
    for (const lost of data.files_lost || []) panel.append(el("div", { class: "err" }, `LOST ${lost.path}: ${fmtBytes(lost.bytes)} never read (${lost.reason})`));
    const journals = data.journals || [];
    const jbody = $("#journals tbody"); jbody.replaceChildren();
    $("#journal-part").hidden = journals.length === 0;
    for (const j of journals) {
      // A gap: entries vacuumed or rotated out of the journal before the agent read them (as logctl status says).
      if (j.gap) panel.append(el("div", { class: "err" }, `LOST ${j.input}: journal entries from ${j.gap.from} to ${j.gap.to} were gone (vacuumed or rotated away) before they were read; found ${j.gap.detected_at}`));
      jbody.append(el("tr", {}, el("td", {}, j.input || ""), el("td", {}, j.topic || ""),
        el("td", { class: j.running ? "" : "err" }, j.running ? "reading" : "not reading" + (j.error ? ": " + j.error : "")),
        el("td", {}, fmtCount(j.entries_read)), el("td", {}, fmtCount(j.entries_acked)), el("td", {}, fmtCount(j.entries_dropped)),
        el("td", {}, j.acked_time || "-")));
    }
    for (const f of (data.files || []).filter((x) => !x.journal)) {  // journal inputs: their own table above
      body.append(el("tr", {}, el("td", {}, f.path || ""), el("td", {}, f.input || ""), el("td", {}, fmtBytes(f.offset)),
        el("td", {}, fmtBytes(f.size)), el("td", {}, fmtBytes(f.lag_bytes)), el("td", { class: f.error ? "err" : "" }, f.error || (f.open ? "open" : "closed"))));
    }
    return data;
  },
  waitApplied(rev) {
    const out = $("#saved");
    out.textContent = `saved: revision ${rev}; waiting for the agent to apply it…`;
    const started = Date.now();
    const tick = async () => {
      const data = await this.agent();
      const cfg = data && data.live ? data : null;
      if (cfg && data.applied_revision >= rev) { out.textContent = `saved: revision ${rev}; the agent applied it`; out.dataset.applied = rev; return; }
      if (Date.now() - started > 60000) { out.textContent = `saved: revision ${rev}; the agent has not applied it within a minute (${data ? data.config_state : "no agent"})`; return; }
      setTimeout(tick, 1000);
    };
    setTimeout(tick, 500);
  },
};

// ---------------------------------------------------------------- transfers

const transfersPage = {
  async init() {
    await this.load();
    await editor("/api/transfer-config", null);
    this.deadLetters();
    setInterval(() => this.load(), 5000);
    setInterval(() => this.deadLetters(), 15000);
  },
  async deadLetters() {
    const { status, data } = await api("GET", "/api/dead-letters");
    const body = $("#dead-letters tbody"); body.replaceChildren();
    if (status !== 200) { body.append(el("tr", {}, el("td", { class: "err", colspan: "5" }, data.error))); return; }
    $("#dlq-topic").textContent = `topic ${data.topic}`;
    if (data.note) body.append(el("tr", {}, el("td", { colspan: "5", class: "hint" }, data.note)));
    else if (!data.records.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "hint" }, "none")));
    for (const d of data.records) {
      body.append(el("tr", { "data-offset": d.offset },
        el("td", { class: "ts" }, d.timestamp_ms ? new Date(d.timestamp_ms).toISOString().replace("T", " ").replace("Z", "") : ""),
        el("td", {}, d.kind), el("td", { class: "err" }, d.reason), el("td", {}, d.source),
        el("td", { class: "msg" }, d.value)));
    }
  },
  async load() {
    const { status, data } = await api("GET", "/api/transfers");
    const box = $("#transfers"); box.replaceChildren();
    if (status !== 200) { box.textContent = data.error; return; }
    if (!data.transfers.length) { box.textContent = "No live transfer."; return; }
    for (const t of data.transfers) {
      const c = t.counters || {};
      const div = el("div", { class: "panel", "data-id": t.id },
        el("b", {}, `${t.id} on ${t.host || "?"}`), ` · version ${t.version || "-"} · group ${t.group_id || "-"}`,
        el("div", {}, `consumed ${fmtCount(c.consumed)} · indexed ${fmtCount(c.indexed)} · dead-lettered ` +
          `${fmtCount(Object.values(c.dead_lettered || {}).reduce((a, b) => a + b, 0))} · lost to retention ` +
          `${fmtCount(c.records_lost_to_retention)} · last error: ${t.last_error || "-"}`));
      for (const g of t.retention_gaps || []) {
        div.append(el("div", { class: "err" }, `LOST ${g.topic}[${g.partition}] offsets ${g.first}..${g.last}: ` +
          `${fmtCount(g.count)} records deleted by Kafka's retention before the group read them (${g.found || ""})`));
      }
      const parts = t.partitions || t.assignment || [];
      if (Array.isArray(parts) && parts.length) {
        const tb = el("tbody");
        for (const p of parts) tb.append(el("tr", {}, el("td", {}, `${p.topic}[${p.partition}]`), el("td", {}, String(p.committed ?? "-")), el("td", {}, String(p.lag ?? "-"))));
        div.append(el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", {}, "partition"), el("th", {}, "committed"), el("th", {}, "lag"))), tb));
      }
      box.append(div);
    }
  },
};

const pages = { search: searchPage, hosts: hostsPage, host: hostPage, transfers: transfersPage };
const page = pages[document.body.dataset.page];
if (page) page.init();
