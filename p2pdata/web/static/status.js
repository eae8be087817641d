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

  let pending = null;
  function refresh() {
    // Debounced: a burst of events costs one request.
    clearTimeout(pending);
    pending = setTimeout(async () => {
      const response = await fetch("/partial" + location.search, { credentials: "same-origin" });
      if (response.redirected) { location.reload(); return; }  // logged out: show the login form
      if (response.ok) live.innerHTML = await response.text();
    }, 200);
  }

  function progress(event) {
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
  }

  const source = new EventSource("/v1/events");
  source.onopen = () => { badge.textContent = "live"; badge.className = "live"; };
  source.onerror = () => { badge.textContent = "reconnecting…"; badge.className = "muted"; };
  source.addEventListener("fetch.progress", (e) => progress(JSON.parse(e.data)));
  for (const kind of REFRESH_ON) source.addEventListener(kind, refresh);
  setInterval(refresh, 30000);  // keeps "last seen" and durations current
})();
