// Live updates for the status page: progress bars from fetch.progress events,
// and a re-render of the sections (from /partial) when anything else changes.
// Without JavaScript the page is a complete snapshot.
(() => {
  "use strict";
  const live = document.getElementById("live");
  const badge = document.getElementById("live-state");
  const REFRESH_ON = [
    "fetch.state", "dataset.landed", "dataset.published", "peer.found", "peer.lost",
    "peer.failed", "peer.rejected", "catalog.updated", "run.state",
  ];

  function size(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i === 0 ? `${Math.round(n)} B` : `${n.toFixed(1)} ${units[i]}`;
  }

  function duration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.floor(s);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  }

  // Throughput history per transfer: [seconds, bytes done] and, per peer, [seconds, bytes from it].
  const HISTORY = 60;
  const SVG = "http://www.w3.org/2000/svg";
  const history = new Map();

  function remember(event) {
    const now = performance.now() / 1000;
    let h = history.get(event.job);
    if (!h) { h = { total: [], peers: new Map() }; history.set(event.job, h); }
    h.total.push([now, event.done_bytes || 0]);
    h.total.splice(0, h.total.length - HISTORY);
    for (const [peer, bytes] of Object.entries(event.sources || {})) {
      if (!h.peers.has(peer)) h.peers.set(peer, []);
      const points = h.peers.get(peer);
      points.push([now, bytes]);
      points.splice(0, points.length - HISTORY);
    }
  }

  function rates(points) {
    // Bytes/s between consecutive samples of a cumulative count.
    const out = [];
    for (let i = 1; i < points.length; i += 1) {
      const dt = points[i][0] - points[i - 1][0];
      if (dt > 0) out.push([points[i][0], Math.max(0, (points[i][1] - points[i - 1][1]) / dt)]);
    }
    return out;
  }

  function line(series, cls, x0, x1, top) {
    const poly = document.createElementNS(SVG, "polyline");
    poly.setAttribute("class", cls);
    poly.setAttribute("points", series.map(([t, r]) =>
      `${(300 * (t - x0) / Math.max(1e-6, x1 - x0)).toFixed(1)},${(54 - 50 * r / top).toFixed(1)}`).join(" "));
    return poly;
  }

  function draw(job) {
    const h = history.get(job);
    const chart = live.querySelector(`.chart[data-job="${CSS.escape(job)}"]`);
    if (!h || !chart) return;
    const total = rates(h.total);
    const peers = [...h.peers.entries()].map(([peer, points]) => [peer, rates(points)]);
    const all = [total, ...peers.map(([, r]) => r)].flat();
    if (!all.length) return;
    const x0 = Math.min(...all.map(([t]) => t));
    const x1 = Math.max(...all.map(([t]) => t));
    const top = Math.max(1, ...all.map(([, r]) => r));
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 300 56");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.appendChild(line(total, "total", x0, x1, top));
    peers.forEach(([, r], i) => svg.appendChild(line(r, `peer p${i % 5}`, x0, x1, top)));
    chart.replaceChildren(svg);
    const list = chart.parentElement.querySelector("ul.sources");
    if (!list) return;
    list.replaceChildren(...peers.map(([peer, r], i) => {
      const item = document.createElement("li");
      item.className = `p${i % 5}`;
      item.dataset.peer = peer;
      const last = r.length ? r[r.length - 1][1] : 0;
      const received = h.peers.get(peer);
      item.textContent = `${peer}: ${size(last)}/s (${size(received[received.length - 1][1])})`;
      return item;
    }));
  }

  let pending = null;
  function refresh() {
    // Debounced: a burst of events costs one request.
    clearTimeout(pending);
    pending = setTimeout(async () => {
      const response = await fetch("/partial" + location.search, { credentials: "same-origin" });
      if (response.redirected) { location.reload(); return; }  // logged out: show the login form
      if (response.ok) {
        live.innerHTML = await response.text();
        for (const job of history.keys()) draw(job);  // the charts survive a re-render
      }
    }, 200);
  }

  function progress(event) {
    remember(event);
    const row = live.querySelector(`tr.job[data-job="${CSS.escape(event.job)}"]`);
    if (!row) { refresh(); return; }
    const done = event.done_bytes || 0;
    const total = event.total_bytes || 0;
    const bar = row.querySelector("progress");
    bar.max = total || 1;
    bar.value = done;
    const percent = total ? (100 * done / total).toFixed(1) : "0.0";
    row.querySelector(".progress-text").textContent =
      `${size(done)} / ${size(total)} (${percent}%) · ${size(event.rate || 0)}/s` +
      ` · ETA ${duration(event.eta)} · ${event.peers || 0} peers`;
    draw(event.job);
  }

  const source = new EventSource("/v1/events");
  source.onopen = () => { badge.textContent = "live"; badge.className = "live"; };
  source.onerror = () => { badge.textContent = "reconnecting…"; badge.className = "muted"; };
  source.addEventListener("fetch.progress", (e) => progress(JSON.parse(e.data)));
  for (const kind of REFRESH_ON) source.addEventListener(kind, refresh);
  setInterval(refresh, 30000);  // keeps "last seen" and durations current
})();
