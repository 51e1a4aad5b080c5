// The dashboard: closed windows arrive on the event stream (/api/stream); the bars and the table
// are summed here over the chosen span, counted back from the newest window. No polling.
"use strict";

const CLASSES = ["http", "ftp", "tcp", "udp", "other"];
const COLOURS = { http: "#1f77b4", ftp: "#ff7f0e", tcp: "#2ca02c", udp: "#9467bd", other: "#8c564b" };
// Out is the class's colour hatched over a lighter shade of it: a pattern, unlike opacity, is
// drawn in the legend's swatches too, so "HTTP in" and "HTTP out" never look the same.
const LIGHTER = { http: "#aec7e8", ftp: "#ffbb78", tcp: "#98df8a", udp: "#c5b0d5", other: "#c49c94" };
const TOP_BARS = 40;

const TEXT = {
  en: {
    title: "Server traffic by client", span: "Last", copy: "Copy as CSV", copied: "copied",
    client: "Client", in: "In", out: "Out", total: "Total", other: "Other", back: "\u2190 Back",
    service: "Service", bytes: "bytes", waiting: "waiting for the first window\u2026",
    status: (n, from, to) => `${n} windows, ${from} \u2013 ${to}`,
    current: (t) => `window in progress: ${t} bytes`,
    drill: (ip) => `Client ${ip}`,
    byClass: "Bytes by class over time (the CSV's classes)",
    byPort: "Bytes by service, by the server's port",
    ftpNote: "FTP's data connections use other ports than 20 and 21 (passive mode): the chart " +
      "counts their bytes as FTP, as the CSV does; this table, by port, has them under tcp/other.",
    lost: "connection lost, reconnecting\u2026", noServices: "no service figures (CSV only)",
  },
  pt: {
    title: "Tr\u00e1fego do servidor por cliente", span: "\u00daltimos", copy: "Copiar como CSV",
    copied: "copiado", client: "Cliente", in: "Entrada", out: "Sa\u00edda", total: "Total",
    other: "Outros", back: "\u2190 Voltar", service: "Servi\u00e7o", bytes: "bytes",
    waiting: "aguardando a primeira janela\u2026",
    status: (n, from, to) => `${n} janelas, ${from} \u2013 ${to}`,
    current: (t) => `janela em andamento: ${t} bytes`,
    drill: (ip) => `Cliente ${ip}`,
    byClass: "Bytes por classe ao longo do tempo (as classes do CSV)",
    byPort: "Bytes por servi\u00e7o, pela porta do servidor",
    ftpNote: "As conex\u00f5es de dados do FTP usam outras portas al\u00e9m da 20 e da 21 (modo " +
      "passivo): o gr\u00e1fico conta os bytes delas como FTP, como o CSV; esta tabela, por " +
      "porta, os p\u00f5e em tcp/other.",
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

const CLASS_NAMES = { http: "HTTP", ftp: "FTP", tcp: "TCP", udp: "UDP", other: T.other };
const SEPARATORS = NUMBER.format(1000.5).replace(/\d/g, "").split("").reverse().join("") || ".,";

// One stacked trace per class and direction: in solid, out hatched (the legend shows the same).
function classTraces(x, value) {
  const traces = [];
  for (const direction of ["in", "out"]) {
    for (const k of CLASSES) {
      const name = `${CLASS_NAMES[k]} ${T[direction].toLowerCase()}`;
      traces.push({
        type: "bar", name, x, y: x.map((_, i) => value(i, direction, k)),
        marker: direction === "in" ? { color: COLOURS[k] } : {
          color: LIGHTER[k],
          pattern: { shape: "/", fgcolor: COLOURS[k], bgcolor: LIGHTER[k], size: 7, solidity: 0.45 },
        },
        hovertemplate: `%{x}<br>${name}: %{y:,} ${T.bytes}<extra></extra>`,
      });
    }
  }
  return traces;
}

// The legend sits above the plot, never on it: anchored by its bottom, the plot's top margin
// grows with its rows (at 420 px it takes three), and ins come before outs.
function chartLayout(bottom) {
  return {
    barmode: "stack", margin: { t: 10, r: 10, b: bottom, l: 70 },
    yaxis: { title: { text: T.bytes }, separatethousands: true }, separators: SEPARATORS,
    legend: { orientation: "h", x: 0, xanchor: "left", y: 1.02, yanchor: "bottom",
              traceorder: "normal" },
  };
}

function renderChart(clients) {
  const top = [...clients].sort((a, b) => b.total - a.total).slice(0, TOP_BARS);
  const x = top.map((c) => c.ip);
  const traces = classTraces(x, (i, direction, k) => top[i][direction][k]);
  const layout = { ...chartLayout(90), xaxis: { type: "category", tickangle: -30 } };
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
  const traces = classTraces(x, (i, direction, k) => data.history[i][direction][k]);
  await Plotly.react("drill-chart", traces, chartLayout(60),
                     { displayModeBar: false, responsive: true });
  const body = document.querySelector("#services tbody");
  const services = data.services || [];
  // The chart counts by class (passive FTP's data is FTP), the table by the server's port
  // (that data is tcp/other): say so where both show FTP's bytes.
  const ftpBytes = data.history.some((w) => w.in.ftp + w.out.ftp > 0);
  document.getElementById("ftp-note").hidden = !(ftpBytes && services.length);
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
