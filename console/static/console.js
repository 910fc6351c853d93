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

const searchPage = {
  state: null, after: null, source: null, rows: 0, MAX_LIVE_ROWS: 2000, saved: [], inflight: null,

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
    $("#live").addEventListener("click", () => { pushState({ ...this.state, live: !this.state.live }); });
    $("#older").addEventListener("click", () => this.fetch(true));
    $("#save-search").addEventListener("click", () => this.save());
    $("#saved").addEventListener("change", () => {
      const pick = this.saved.find((x) => x.name === $("#saved").value);
      $("#delete-search").hidden = !pick;
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
    window.addEventListener("popstate", () => this.load());
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
    this.fetch(false);
    this.live(s.live);
  },

  async loadSaved() {
    const { status, data } = await api("GET", "/api/searches");
    if (status !== 200) return;
    this.saved = data.searches;
    const sel = $("#saved");
    sel.replaceChildren(el("option", { value: "" }, "Saved searches…"));
    for (const x of this.saved) sel.append(el("option", { value: x.name, title: `by ${x.saved_by}, ${x.saved_at}` }, x.name));
  },

  async save() {
    const name = (prompt("Name of this search (shared with everyone who uses the console):") || "").trim();
    if (!name) return;
    const state = {};
    for (const k of STATE_KEYS) if (this.state[k]) state[k] = this.state[k];
    let { status, data } = await api("PUT", "/api/searches/" + encodeURIComponent(name), { state, revision: 0 });
    if (status === 409 && confirm(`"${name}" exists already. Replace it?`)) {
      ({ status, data } = await api("PUT", "/api/searches/" + encodeURIComponent(name), { state, revision: data.revision }));
    }
    $("#tools-msg").textContent = status === 200 ? `saved as "${name}"` : data.error;
    await this.loadSaved();
    if (status === 200) $("#saved").value = name;
  },

  async fetch(older) {
    const extra = older && this.after ? { after: JSON.stringify(this.after) } : {};
    const t0 = performance.now();
    // A newer query makes the one in flight useless: abort it, so its answer never overwrites.
    if (this.inflight) this.inflight.abort();
    const ctl = new AbortController(); this.inflight = ctl;
    let status, data;
    try {
      ({ status, data } = await api("GET", "/api/search?" + stateQuery(this.state, extra), undefined, ctl.signal));
    } catch (e) {
      if (e.name === "AbortError") return;
      throw e;
    }
    if (this.inflight === ctl) this.inflight = null;
    const problem = $("#problem");
    if (status !== 200) { problem.hidden = false; problem.textContent = data.error || `error ${status}`; return; }
    problem.hidden = true;
    const body = $("#hits tbody");
    if (!older) { body.replaceChildren(); this.rows = 0; }
    for (const line of data.hits) body.append(this.row(line));
    this.rows += data.hits.length;
    this.after = data.hits.length ? data.hits[data.hits.length - 1].sort : null;
    $("#older").hidden = !(data.hits.length && this.rows < data.total);
    if (!older) {
      const rel = data.total_relation === "gte" ? "at least " : "";
      $("#summary").textContent = `${rel}${fmtCount(data.total)} line${data.total === 1 ? "" : "s"} · newest first · ${Math.round(performance.now() - t0)} ms` +
        (data.note ? ` · ${data.note}` : "") + (data.timed_out ? " · Elasticsearch timed out: partial results" : "");
      $("#summary").dataset.total = data.total;
      this.histogram(data.histogram);
      this.facets(data.facets);
    }
  },

  row(line) {
    const tr = el("tr", { "data-id": line.id },
      el("td", { class: "ts" }, (line.ts || "").replace("T", " ").replace("Z", "")),
      el("td", { class: "host" }, line.host || line.ip || ""),
      el("td", { class: "file", title: line.file || "" }, (line.file || "").split("/").pop()),
      el("td", { class: "msg" }, line.message));
    if (line.flags && line.flags.length) tr.querySelector(".msg").prepend(el("span", { class: "flag" }, line.flags.join(" ")), " ");
    tr.addEventListener("click", () => this.context(line));
    return tr;
  },

  async context(line) {
    const { status, data } = await api("GET", `/api/context?index=${encodeURIComponent(line.index)}&id=${encodeURIComponent(line.id)}&size=10`);
    const pre = $("#context-lines"); pre.replaceChildren();
    $("#context-where").textContent = `${line.host || line.ip} ${line.file}`;
    if (status !== 200) { pre.textContent = data.error; $("#context").showModal(); return; }
    const add = (l, cls) => pre.append(el("div", { class: cls, "data-offset": l.offset }, el("span", { class: "off" }, String(l.offset).padStart(9)), " ", l.message));
    data.before.forEach((l) => add(l, "ctx"));
    add(data.line, "ctx this");
    data.after.forEach((l) => add(l, "ctx"));
    $("#context").showModal();
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
  },

  live(on) {
    if (this.source) { this.source.close(); this.source = null; }
    if (!on) return;
    const src = new EventSource("/api/tail?" + stateQuery(this.state));
    src.onmessage = (ev) => {
      const line = JSON.parse(ev.data);
      const body = $("#hits tbody");
      const tr = this.row(line); tr.classList.add("new");
      body.prepend(tr);
      while (body.children.length > this.MAX_LIVE_ROWS) body.lastElementChild.remove();  // a bounded buffer
      $("#summary").dataset.live = (Number($("#summary").dataset.live || 0) + 1);
    };
    src.addEventListener("problem", (ev) => { $("#problem").hidden = false; $("#problem").textContent = "live tail: " + JSON.parse(ev.data); });
    this.source = src;
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
      const lag = (h.files || []).reduce((a, f) => a + (f.lag_bytes || 0), 0);
      body.append(el("tr", { "data-ip": h.ip, class: h.live ? "" : "down" },
        el("td", {}, el("a", { href: "/hosts/" + h.ip }, h.ip)),
        el("td", {}, h.live ? "live" : "no agent"),
        el("td", {}, h.hostname || ""), el("td", {}, h.version || ""),
        el("td", {}, h.inputs === null ? "-" : String(h.inputs)),
        el("td", {}, h.config_state), el("td", {}, String((h.files || []).length)),
        el("td", {}, fmtBytes(lag)),
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
    for (const f of data.files || []) {
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
