// The dashboard. Short spans are live: closed windows arrive on the event stream (/api/stream)
// and the bars and the table are summed here over the span, counted back from the newest
// window. Longer spans, and from/to, are asked of /api/clients, which answers from the memory
// or the history at the resolution it picks (said beside the range), again every 30 s for
// "last ..." spans. Over a fleet (serve --clickhouse) a picker chooses all servers (a client's
// bytes on several added up) or one (its rows alone): every request then names it (server=).
"use strict";

const CLASSES = ["http", "ftp", "tcp", "udp", "other"];
const COLOURS = { http: "#1f77b4", ftp: "#ff7f0e", tcp: "#2ca02c", udp: "#9467bd", other: "#8c564b" };
// Out is the class's colour hatched over a lighter shade of it: a pattern, unlike opacity, is
// drawn in the legend's swatches too, so "HTTP in" and "HTTP out" never look the same.
const LIGHTER = { http: "#aec7e8", ftp: "#ffbb78", tcp: "#98df8a", udp: "#c5b0d5", other: "#c49c94" };
const TOP_BARS = 40;
// Spans up to this long are summed here from the stream (when the dashboard's memory holds
// them); longer ones are asked of the API, which may read a history.
const LIVE_MAX_SECONDS = 3600;
const REFRESH_MS = 30000;
const FETCH_LIMIT = 1000;
const TEXT = {
  en: {
    title: "Server traffic by client", span: "Range", copy: "Copy as CSV", copied: "copied",
    last1m: "last 1 min", last5m: "last 5 min", last15m: "last 15 min", last1h: "last 1 h",
    last1d: "last day", last1w: "last week", last1mo: "last month (30 days)",
    custom: "from / to\u2026", from: "From", to: "To", apply: "Show",
    per: (s) => ({ 60: "per minute", 3600: "per hour", 86400: "per day" })[s] || `per ${s} s`,
    badRange: "the start must be before the end", loading: "loading\u2026",
    noServicesRange: (m) => `service figures only for what the dashboard holds in memory ` +
      `(the last ${m} min)`,
    shown: (n, total) => `top ${n} of ${total} clients`,
    client: "Client", in: "In", out: "Out", total: "Total", other: "Other", back: "\u2190 Back",
    service: "Service", bytes: "bytes", waiting: "waiting for the first window\u2026",
    status: (n, from, to) => `${n} windows, ${from} \u2013 ${to}`,
    current: (t) => `window in progress: ${t} bytes`,
    drill: (ip) => `Client ${ip}`,
    byClass: "Bytes by class over time (the CSV's classes)",
    byPort: "Bytes by service, by the server's port",
    ftpNote: "FTP's data connections use other ports than 20 and 21 (passive mode): the chart " +
      "counts their bytes as FTP, as the CSV does; this table, by port, has them under tcp/other.",
    lost: "connection lost, reconnecting\u2026",
    noServices: "no service figures (a CSV, a history or a fleet has no ports)",
    serverPick: "Server", allServers: "all servers",
    allNote: "all servers: a client's bytes on several servers are added up",
    oneNote: (name) => `server ${name} only`,
    onServer: (name) => `on ${name}`, onAll: "on all servers",
  },
  pt: {
    title: "Tr\u00e1fego do servidor por cliente", span: "Per\u00edodo", copy: "Copiar como CSV",
    last1m: "\u00faltimo 1 min", last5m: "\u00faltimos 5 min", last15m: "\u00faltimos 15 min",
    last1h: "\u00faltima 1 h", last1d: "\u00faltimo dia", last1w: "\u00faltima semana",
    last1mo: "\u00faltimo m\u00eas (30 dias)", custom: "de / at\u00e9\u2026", from: "De",
    to: "At\u00e9", apply: "Mostrar",
    per: (s) => ({ 60: "por minuto", 3600: "por hora", 86400: "por dia" })[s] || `a cada ${s} s`,
    badRange: "o in\u00edcio deve ser antes do fim", loading: "carregando\u2026",
    noServicesRange: (m) => `dados por servi\u00e7o s\u00f3 para o que o painel guarda em ` +
      `mem\u00f3ria (os \u00faltimos ${m} min)`,
    shown: (n, total) => `${n} maiores de ${total} clientes`,
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
    noServices: "sem dados por servi\u00e7o (um CSV, um hist\u00f3rico ou uma frota n\u00e3o " +
      "t\u00eam portas)",
    serverPick: "Servidor", allServers: "todos os servidores",
    allNote: "todos os servidores: os bytes de um cliente em v\u00e1rios servidores s\u00e3o " +
      "somados",
    oneNote: (name) => `s\u00f3 o servidor ${name}`,
    onServer: (name) => `em ${name}`, onAll: "em todos os servidores",
  },
};
const LANG = (navigator.languages || [navigator.language || "en"])
  .map((l) => l.toLowerCase().slice(0, 2)).find((l) => l in TEXT) || "en";
const T = TEXT[LANG];
const NUMBER = new Intl.NumberFormat(navigator.languages ? navigator.languages[0] : undefined);
const fmt = (n) => NUMBER.format(n);
const LOCALE = navigator.languages ? navigator.languages[0] : undefined;
const time = (s) => new Date(s * 1000).toLocaleTimeString(LOCALE);
const dateTime = (s) => new Date(s * 1000).toLocaleString(LOCALE, { dateStyle: "short", timeStyle: "short" });

const windows = new Map(); // start -> window {start, end, rows}
let span = Number(document.getElementById("span").value);
let range = null; // {from, to} epoch seconds: a from/to range instead of the last `span`
let live = true; // the span is summed here from the stream; else asked of the API
let fetched = null; // the API's answer shown when not live
let server = { window_seconds: 5, history_seconds: 3600, services_known: true };
let refreshTimer = null;
let asked = 0; // the newest request: an older answer arriving late is dropped
let sortKey = "total";
let sortAscending = false;
let clientsShown = [];
let drilled = null;
let renderQueued = false;
let source = null;
let fleet = false; // serve --clickhouse: servers to pick from
let serverName = null; // the server picked; null: all of them

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
  if (!live) {
    renderFetched();
    return;
  }
  prune();
  const clients = summed();
  const starts = [...windows.keys()];
  const status = document.getElementById("status");
  status.textContent = starts.length
    ? T.status(starts.length, time(Math.min(...starts)), time(newestEnd())) : T.waiting;
  showResolution(server.window_seconds);
  renderChart(clients);
  renderTable(clients);
}

function showResolution(seconds) {
  const el = document.getElementById("resolution");
  el.dataset.resolution = seconds;
  el.textContent = T.per(seconds);
}

// The server picked as the API's parameter ("" for all servers, or outside a fleet).
function serverQuery() {
  return serverName === null ? "" : `&server=${encodeURIComponent(serverName)}`;
}

// The range as the API's parameters: the last `span` seconds, or from/to; and the server.
function rangeQuery() {
  return (range ? `from=${range.from}&to=${range.to}` : `seconds=${span}`) + serverQuery();
}

// An API answer's clients as the table's: each class's bytes beside the totals.
function fromAnswer(c) {
  const row = { ip: c.ip, bytes_in: c.bytes_in, bytes_out: c.bytes_out, total: c.total,
                in: c.in, out: c.out };
  for (const k of CLASSES) row[k] = c.protocols[k];
  return row;
}

function renderFetched() {
  const status = document.getElementById("status");
  if (!fetched) {
    status.textContent = T.loading;
    return;
  }
  const long = (fetched.to || 0) - (fetched.from || 0) > 86400 || !!range;
  const when = long ? dateTime : time;
  let text = fetched.windows ? T.status(fetched.windows, when(fetched.from), when(fetched.to))
    : T.waiting;
  if (fetched.clients_active > fetched.clients.length) {
    text += ` (${T.shown(fetched.clients.length, fetched.clients_active)})`;
  }
  status.textContent = text;
  showResolution(fetched.resolution);
  const clients = fetched.clients.map(fromAnswer);
  renderChart(clients);
  renderTable(clients);
}

async function load() {
  const mine = ++asked;
  let text;
  try {
    const response = await fetch(`api/clients?${rangeQuery()}&limit=${FETCH_LIMIT}`);
    const data = await response.json();
    if (mine !== asked) return;
    if (!response.ok) {
      text = typeof data.detail === "string" ? data.detail : response.statusText;
    } else {
      fetched = data;
      render();
      return;
    }
  } catch (error) {
    if (mine !== asked) return;
    text = T.lost;
  }
  document.getElementById("status").textContent = text;
}

// The span or range chosen: live from the stream, or asked of the API (and asked again every
// 30 s for a "last ..." span, whose end moves).
function choose() {
  clearInterval(refreshTimer);
  refreshTimer = null;
  live = !range && span <= Math.min(LIVE_MAX_SECONDS, server.history_seconds);
  windows.clear();
  fetched = null;
  if (live) {
    connect(); // a longer span needs older windows: a fresh stream sends them
    render();
    return;
  }
  if (source) {
    source.close();
    source = null;
  }
  render();
  load();
  if (!range) refreshTimer = setInterval(load, REFRESH_MS);
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
  document.getElementById("drill-title").textContent = T.drill(ip) + (fleet
    ? ` (${serverName === null ? T.onAll : T.onServer(serverName)})` : "");
  document.getElementById("overview").hidden = true;
  section.hidden = false;
  const drillResolution = document.getElementById("drill-resolution");
  drillResolution.textContent = "";
  const response = await fetch(`api/clients/${encodeURIComponent(ip)}?${rangeQuery()}`);
  if (!response.ok || drilled !== ip) return;
  const data = await response.json();
  // The chart is at the answer's resolution: a bar per window of it.
  drillResolution.dataset.resolution = data.resolution;
  drillResolution.textContent = `(${T.per(data.resolution)})`;
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
  }) : [Object.assign(document.createElement("tr"), { textContent: data.services ? ""
    : !live && server.services_known ? T.noServicesRange(Math.round(server.history_seconds / 60))
      : T.noServices })]));
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
  source = new EventSource(`api/stream?seconds=${span}${serverQuery()}`);
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
    if (source && source.readyState !== EventSource.OPEN) {
      document.getElementById("status").textContent = T.lost;
    }
  };
}

// datetime-local's value for epoch seconds, in the browser's time zone.
function localInput(seconds) {
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function applyCustom() {
  // A datetime-local value without a zone is the browser's local time for Date.
  const from = Math.floor(new Date(document.getElementById("from").value).getTime() / 1000);
  const to = Math.ceil(new Date(document.getElementById("to").value).getTime() / 1000);
  if (!(from < to)) {
    document.getElementById("status").textContent = T.badRange;
    return;
  }
  range = { from, to };
  choose();
}

// A fleet's servers in the picker (the one picked kept); and which is shown, said beside it.
function showServers(listed) {
  const select = document.getElementById("server");
  const names = listed.map((s) => s.name);
  const options = [select.options[0], ...names.map((name) => {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    return option;
  })];
  select.replaceChildren(...options);
  select.value = serverName === null ? "" : serverName;
  const note = document.getElementById("scope-note");
  note.dataset.server = serverName === null ? "" : serverName;
  note.textContent = serverName === null ? T.allNote : T.oneNote(serverName);
}

function loadServers() {
  return fetch("api/servers").then((r) => (r.ok ? r.json() : null)).then((data) => {
    if (!data || !data.fleet) return;
    fleet = true;
    document.getElementById("fleet").hidden = false;
    showServers(data.servers);
  }).catch(() => {});
}

function pickServer(name) {
  serverName = name || null;
  showServers([...document.getElementById("server").options].slice(1)
    .map((o) => ({ name: o.value })));
  if (drilled !== null) back();
  choose();
}

function init() {
  translate();
  document.getElementById("span").addEventListener("change", (event) => {
    const custom = event.target.value === "custom";
    document.getElementById("custom").hidden = !custom;
    if (custom) {
      const to = document.getElementById("to");
      if (!to.value) {
        const end = (fetched && fetched.to) || newestEnd() || Math.floor(Date.now() / 1000);
        to.value = localInput(end);
        document.getElementById("from").value = localInput(end - 86400);
      }
      return; // shown once Show is pressed
    }
    span = Number(event.target.value);
    range = null;
    choose();
  });
  document.getElementById("apply").addEventListener("click", applyCustom);
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
  document.getElementById("server").addEventListener("change",
    (event) => pickServer(event.target.value));
  document.getElementById("copy").addEventListener("click", copyCsv);
  render();
  connect();
  // The window length, the memory's span and whether ports are known: the span's mode and
  // the resolution shown depend on them.
  fetch("api/status").then((r) => (r.ok ? r.json() : null)).then((status) => {
    if (!status) return;
    server = { window_seconds: status.window_seconds || 5,
               history_seconds: status.history_seconds || LIVE_MAX_SECONDS,
               services_known: !!status.services_known };
    if (!range && live !== span <= Math.min(LIVE_MAX_SECONDS, server.history_seconds)) choose();
    else if (live) render();
  }).catch(() => {});
  // A fleet: its servers to pick from, listed again now and then (a server that began
  // sending since).
  loadServers().then(() => { if (fleet) setInterval(loadServers, REFRESH_MS); });
}

init();
