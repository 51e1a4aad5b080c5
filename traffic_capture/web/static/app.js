// The dashboard: closed windows arrive on the event stream (/api/stream); the bars and the table
// are summed here over the chosen span, counted back from the newest window. No polling.
"use strict";

const CLASSES = ["http", "ftp", "tcp", "udp", "other"];
const COLOURS = { http: "#1f77b4", ftp: "#ff7f0e", tcp: "#2ca02c", udp: "#9467bd", other: "#8c564b" };
const TOP_BARS = 40;

const TEXT = {
  en: {
    title: "Server traffic by client", span: "Last", copy: "Copy as CSV", copied: "copied",
    client: "Client", in: "In", out: "Out", total: "Total", other: "Other", back: "\u2190 Back",
    service: "Service", bytes: "bytes", waiting: "waiting for the first window\u2026",
    status: (n, from, to) => `${n} windows, ${from} \u2013 ${to}`,
    current: (t) => `window in progress: ${t} bytes`,
    drill: (ip) => `Client ${ip}: bytes by class over time`,
    lost: "connection lost, reconnecting\u2026", noServices: "no service figures (CSV only)",
  },
  pt: {
    title: "Tr\u00e1fego do servidor por cliente", span: "\u00daltimos", copy: "Copiar como CSV",
    copied: "copiado", client: "Cliente", in: "Entrada", out: "Sa\u00edda", total: "Total",
    other: "Outros", back: "\u2190 Voltar", service: "Servi\u00e7o", bytes: "bytes",
    waiting: "aguardando a primeira janela\u2026",
    status: (n, from, to) => `${n} janelas, ${from} \u2013 ${to}`,
    current: (t) => `janela em andamento: ${t} bytes`,
    drill: (ip) => `Cliente ${ip}: bytes por classe ao longo do tempo`,
    lost: "conex\u00e3o perdida, reconectando\u2026",
    noServices: "sem dados por servi\u00e7o (somente CSV)",
  },
};
const LANG = (navigator.languages || [navigator.language || "en"])
  .map((l) => l.toLowerCase().slice(0, 2)).find((l) => l in TEXT) || "en";
const T = TEXT[LANG];
const NUMBER = new Intl.NumberFormat(navigator.languages ? navigator.languages[0] : undefined);
const fmt = (n) => NUMBER.format(n);
const time = (s) => new Date(s * 1000).toLocaleTimeString(navigator.languages ? navigator.languages[0] : undefined);

const windows = new Map(); // start -> window {start, end, rows}
let span = Number(document.getElementById("span").value);
let sortKey = "total";
let sortAscending = false;
let clientsShown = [];
let drilled = null;
let renderQueued = false;
let source = null;

function translate() {
  document.documentElement.lang = LANG === "pt" ? "pt-BR" : "en";
  document.title = `traffic-capture \u2013 ${T.title}`;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = T[el.dataset.i18n];
}

function newestEnd() {
  let newest = 0;
  for (const w of windows.values()) newest = Math.max(newest, w.end);
  return newest;
}

function prune() {
  const cutoff = newestEnd() - span;
  for (const [start, w] of windows) if (w.end <= cutoff) windows.delete(start);
}

function summed() {
  const byClient = new Map();
  for (const w of windows.values()) {
    for (const r of w.rows) {
      let c = byClient.get(r.client_ip);
      if (!c) {
        c = { ip: r.client_ip, bytes_in: 0, bytes_out: 0, total: 0, in: {}, out: {} };
        for (const k of CLASSES) { c[k] = 0; c.in[k] = 0; c.out[k] = 0; }
        byClient.set(r.client_ip, c);
      }
      c[r.direction === "in" ? "bytes_in" : "bytes_out"] += r.total_bytes;
      c.total += r.total_bytes;
      for (const k of CLASSES) {
        c[k] += r[`${k}_bytes`];
        c[r.direction][k] += r[`${k}_bytes`];
      }
    }
  }
  return [...byClient.values()].filter((c) => c.total > 0);
}

function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; render(); });
}

function render() {
  prune();
  const clients = summed();
  const starts = [...windows.keys()];
  const status = document.getElementById("status");
  status.textContent = starts.length
    ? T.status(starts.length, time(Math.min(...starts)), time(newestEnd())) : T.waiting;
  renderChart(clients);
  renderTable(clients);
}

function renderChart(clients) {
  const top = [...clients].sort((a, b) => b.total - a.total).slice(0, TOP_BARS);
  const x = top.map((c) => c.ip);
  const traces = [];
  for (const direction of ["in", "out"]) {
    for (const k of CLASSES) {
      traces.push({
        type: "bar", name: `${k.toUpperCase()} ${T[direction].toLowerCase()}`, x,
        y: top.map((c) => c[direction][k]), customdata: x,
        marker: { color: COLOURS[k], opacity: direction === "in" ? 1 : 0.55 },
        hovertemplate: `%{x}<br>${k.toUpperCase()} ${T[direction].toLowerCase()}: %{y:,} ${T.bytes}<extra></extra>`,
      });
    }
  }
  const layout = {
    barmode: "stack", margin: { t: 20, r: 10, b: 90, l: 80 },
    xaxis: { type: "category", tickangle: -30 },
    yaxis: { title: { text: T.bytes }, separatethousands: true },
    separators: NUMBER.format(1000.5).replace(/\d/g, "").split("").reverse().join("") || ".,",
    legend: { orientation: "h", y: 1.1 },
  };
  const chart = document.getElementById("chart");
  Plotly.react(chart, traces, layout, { displayModeBar: false, responsive: true })
    .then(() => tagBars(chart, x));
  if (!chart.dataset.clickBound) {
    chart.dataset.clickBound = "1";
    chart.on("plotly_click", (event) => { if (event.points.length) drill(event.points[0].x); });
  }
}

// Stable hooks for tests and keyboard users: every drawn bar segment names its client.
function tagBars(chart, x) {
  chart.querySelectorAll(".trace.bars").forEach((trace) => {
    trace.querySelectorAll(".point").forEach((point, i) => {
      const d = point.__data__;
      const index = d && typeof d.i === "number" ? d.i : i;
      if (index < x.length) point.setAttribute("data-client", x[index]);
    });
  });
}

function renderTable(clients) {
  clients.sort((a, b) => {
    const va = a[sortKey], vb = b[sortKey];
    const order = typeof va === "string" ? va.localeCompare(vb, undefined, { numeric: true }) : va - vb;
    return sortAscending ? order : -order;
  });
  clientsShown = clients;
  const body = document.querySelector("#clients tbody");
  const rows = clients.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.client = c.ip;
    tr.tabIndex = 0;
    const cells = [c.ip, c.bytes_in, c.bytes_out, c.total, ...CLASSES.map((k) => c[k])];
    cells.forEach((value, i) => {
      const td = document.createElement("td");
      td.textContent = i === 0 ? value : fmt(value);
      if (i > 0) td.className = "num";
      tr.appendChild(td);
    });
    return tr;
  });
  body.replaceChildren(...rows);
  for (const th of document.querySelectorAll("#clients th")) {
    th.classList.toggle("sorted", th.dataset.key === sortKey);
    th.classList.toggle("asc", th.dataset.key === sortKey && sortAscending);
  }
}

function csvText() {
  const head = ["client_ip", "bytes_in", "bytes_out", "total", ...CLASSES.map((k) => `${k}_bytes`)];
  const lines = clientsShown.map((c) => [c.ip, c.bytes_in, c.bytes_out, c.total, ...CLASSES.map((k) => c[k])].join(","));
  return [head.join(","), ...lines].join("\n") + "\n";
}

async function copyCsv() {
  const text = csvText();
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) { // not a secure context (http off loopback): the old way
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  const note = document.getElementById("copied");
  note.textContent = T.copied;
  setTimeout(() => { note.textContent = ""; }, 2000);
}

async function drill(ip) {
  drilled = ip;
  const section = document.getElementById("drill");
  section.dataset.drilldown = ip;
  document.getElementById("drill-title").textContent = T.drill(ip);
  document.getElementById("overview").hidden = true;
  section.hidden = false;
  const response = await fetch(`api/clients/${encodeURIComponent(ip)}?seconds=${span}`);
  if (!response.ok || drilled !== ip) return;
  const data = await response.json();
  const x = data.history.map((w) => new Date(w.start * 1000));
  const traces = [];
  for (const direction of ["in", "out"]) {
    for (const k of CLASSES) {
      traces.push({
        type: "bar", name: `${k.toUpperCase()} ${T[direction].toLowerCase()}`, x,
        y: data.history.map((w) => w[direction][k]),
        marker: { color: COLOURS[k], opacity: direction === "in" ? 1 : 0.55 },
      });
    }
  }
  await Plotly.react("drill-chart", traces, {
    barmode: "stack", margin: { t: 20, r: 10, b: 60, l: 80 },
    yaxis: { title: { text: T.bytes } }, legend: { orientation: "h", y: 1.1 },
  }, { displayModeBar: false, responsive: true });
  const body = document.querySelector("#services tbody");
  const services = data.services || [];
  body.replaceChildren(...(services.length ? services.map((s) => {
    const tr = document.createElement("tr");
    for (const [i, v] of [s.service, s.bytes_in, s.bytes_out, s.total].entries()) {
      const td = document.createElement("td");
      td.textContent = i ? fmt(v) : v;
      if (i) td.className = "num";
      tr.appendChild(td);
    }
    return tr;
  }) : [Object.assign(document.createElement("tr"), { textContent: data.services ? "" : T.noServices })]));
}

function back() {
  drilled = null;
  const section = document.getElementById("drill");
  section.hidden = true;
  delete section.dataset.drilldown;
  document.getElementById("overview").hidden = false;
  queueRender();
}

function connect() {
  if (source) source.close();
  source = new EventSource(`api/stream?seconds=${span}`);
  source.addEventListener("window", (event) => {
    const w = JSON.parse(event.data);
    // A window closed again by late packets (id start.1...): its rows add to the first ones.
    const held = windows.get(w.start);
    windows.set(w.start, held ? { ...w, rows: held.rows.concat(w.rows) } : w);
    queueRender();
  });
  source.addEventListener("current", (event) => {
    const w = JSON.parse(event.data);
    const el = document.getElementById("status");
    if (w && windows.size) {
      const total = w.rows.reduce((sum, r) => sum + r.total_bytes, 0);
      el.textContent = el.textContent.split(" | ")[0] + " | " + T.current(fmt(total));
    }
  });
  source.onerror = () => {
    if (source.readyState !== EventSource.OPEN) document.getElementById("status").textContent = T.lost;
  };
}

function init() {
  translate();
  document.getElementById("span").addEventListener("change", (event) => {
    span = Number(event.target.value);
    windows.clear();
    connect(); // a longer span needs older windows: a fresh stream sends them
    render();
  });
  document.querySelectorAll("#clients th[data-key]").forEach((th) => th.addEventListener("click", () => {
    sortAscending = sortKey === th.dataset.key ? !sortAscending : th.dataset.key === "ip";
    sortKey = th.dataset.key;
    renderTable(clientsShown);
  }));
  const body = document.querySelector("#clients tbody");
  body.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-client]");
    if (row) drill(row.dataset.client);
  });
  body.addEventListener("keydown", (event) => {
    const row = event.target.closest("tr[data-client]");
    if (row && event.key === "Enter") drill(row.dataset.client);
  });
  document.getElementById("back").addEventListener("click", back);
  document.getElementById("copy").addEventListener("click", copyCsv);
  render();
  connect();
}

init();
