// sluice's live page: polls /api/live every 2 s and draws it. Everything is written with
// textContent (nothing from the server is parsed as HTML).
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const api = "/api/live" + (token ? "?token=" + encodeURIComponent(token) : "");

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1000) return (v / 1000).toFixed(2) + " s";
  if (v >= 10) return v.toFixed(0) + " ms";
  return v.toFixed(2) + " ms";
}

function secs(v) {
  if (v >= 60) return (v / 60).toFixed(1) + " min";
  return v.toFixed(1) + " s";
}

function bar(fraction) {
  const b = el("span", null, "bar" + (fraction >= 0.9 ? " hot" : ""));
  const fill = el("span");
  fill.style.width = Math.round(Math.min(1, fraction) * 100) + "%";
  b.appendChild(fill);
  return b;
}

// A small line chart of [time_ms, value|null] points on a canvas.
function chart(points) {
  const c = document.createElement("canvas");
  const w = 160, h = 34;
  c.width = w; c.height = h;
  const g = c.getContext("2d");
  g.fillStyle = "#f3f5f8"; g.fillRect(0, 0, w, h);
  const vals = points.map(p => p[1]).filter(v => v !== null);
  const max = Math.max(1, ...vals);
  g.strokeStyle = "#3b82c4"; g.lineWidth = 1.5; g.beginPath();
  let started = false;
  points.forEach((p, i) => {
    const x = points.length < 2 ? w / 2 : (i / (points.length - 1)) * (w - 4) + 2;
    const y = h - 3 - ((p[1] || 0) / max) * (h - 8);
    if (!started) { g.moveTo(x, y); started = true; } else { g.lineTo(x, y); }
  });
  g.stroke();
  g.fillStyle = "#556"; g.font = "10px sans-serif";
  g.fillText("max " + ms(vals.length ? max : 0), 3, 10);
  c.title = "wait p99 per 5 s, last " + points.length * 5 + " s";
  return c;
}

function fill(id, rows, empty) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
  if (!rows.length) {
    const tr = el("tr");
    const td = el("td", empty, "muted");
    td.colSpan = document.querySelectorAll("#" + id + " thead th").length;
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

function row(cells) {
  const tr = el("tr");
  for (const c of cells) {
    if (c instanceof Node) { const td = el("td"); td.appendChild(c); tr.appendChild(td); }
    else if (Array.isArray(c)) { tr.appendChild(el("td", c[0], c[1])); }
    else { tr.appendChild(el("td", c)); }
  }
  return tr;
}

function render(d) {
  document.getElementById("version").textContent = d.version;
  fill("pools", d.pools.map(p => {
    const sat = el("span");
    sat.appendChild(bar(p.saturation));
    sat.appendChild(el("span", Math.round(p.saturation * 100) + "%"));
    const errs = p.errors_last_minute.map(e => e[0] + ": " + e[1]).join(", ");
    const tr = row([
      [p.name, "pool"], sat, [p.servers_active + " / " + p.size, "num"], [p.clients_active, "num"],
      [p.clients_waiting, "num" + (p.clients_waiting > 0 ? " bad" : "")],
      [secs(p.longest_wait_s), "num"],
      [p.idle_in_transaction + (p.idle_in_transaction ? " (longest " + secs(p.idle_in_transaction_max_s) + ")" : ""),
       p.idle_in_transaction ? "bad" : ""],
      chart(p.wait_p99_ms), [errs || "none", errs ? "bad" : "muted"],
    ]);
    tr.dataset.pool = p.name;
    return tr;
  }), "no pool yet: pools are made when the first client logs in");
  fill("queries", d.queries.map(q => row([
    q.database + "/" + q.user, [q.calls, "num"], [ms(q.total_ms), "num"], [ms(q.mean_ms), "num"],
    [ms(q.p99_ms), "num"],
    [q.errors ? q.errors + " (" + q.errors_by_class.map(e => e[0] + ":" + e[1]).join(" ") + ")" : "0", q.errors ? "num bad" : "num"],
    [ms(q.wait_ms), "num"], [ms(q.held_ms), "num"], [q.fingerprint, "fp"],
  ])), d.query_stats.enabled ? "no statement counted yet" : "query_stats = false");
  document.getElementById("queries-note").textContent =
    d.query_stats.entries + " fingerprints counted" + (d.query_stats.evicted ? ", " + d.query_stats.evicted + " light ones dropped to stay within query_stats_max_entries" : "");
  fill("holders", d.holders.map(h => row([
    h.pool || "", h.client, h.application_name, [secs(h.age_s), "num bad"], [h.fingerprint || "", "fp"],
  ])), "nobody holds a server connection idle in a transaction");
  fill("replicas", d.replicas.map(r => row([
    r.database, r.replica, [r.healthy ? "healthy" : "out of rotation", r.healthy ? "good" : "bad"],
    r.lag_seconds === null ? "–" : r.lag_seconds.toFixed(3) + " s" + (r.lag_bytes !== null ? " (" + r.lag_bytes + " bytes)" : ""),
    r.last_error || "",
  ])), "no replicas configured");
  document.getElementById("status").textContent = "updated " + new Date(d.now_ms).toLocaleTimeString();
}

async function poll() {
  try {
    const r = await fetch(api, { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + (await r.text()));
    render(await r.json());
  } catch (e) {
    document.getElementById("status").textContent = "cannot reach sluice: " + e.message;
  }
}

poll();
setInterval(poll, 2000);
