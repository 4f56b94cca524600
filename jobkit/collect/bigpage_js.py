"""The script and styles of a large sweep's index.html (`jobkit.collect.bigpage`), inline: the page
works offline, from a file. Plain browser JavaScript, no library.

It reads the JSON data block (`#jobkit-data`), keeps every run as an array and shows one page of
rows at a time (10,000 runs never become 10,000 table rows); sorts by any column, filters per column
(text: substring; numbers: `>0.5`, `<=3`, `1..2`, `=4`), finds the best run of each group, and draws
the curves of the runs a person ticks, loading their `curves/cNNNN.js` chunks on demand.
"""
from __future__ import annotations

EXTRA_CSS = """
.controls { display: flex; flex-wrap: wrap; gap: 8px 18px; align-items: center; margin: 8px 0; }
.controls label { font-size: 13px; } input.f { width: 100%; min-width: 48px; font: 12px system-ui, sans-serif; padding: 2px 4px; }
th.sort { cursor: pointer; user-select: none; white-space: nowrap; } th.sort:hover { background: #eaeef2; }
th.asc::after { content: " ▲"; font-size: 10px; } th.desc::after { content: " ▼"; font-size: 10px; }
tr.filters th { background: #fff; padding: 2px 4px; } td.note { max-width: 360px; font-size: 12px; color: var(--muted); }
.pager button, .controls button { font: 13px system-ui, sans-serif; padding: 2px 10px; }
#pick-note { color: var(--muted); font-size: 13px; } table.facts th, table.params th, table.metrics th { text-align: left; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("jobkit-data").textContent);
  const C = D.columns, R = D.rows, N = R.length, MAX_PICK = 12;
  const col = name => C.findIndex(c => c.name === name);
  const RUN = col("run"), STATE = col("state");
  const st = {sort: -1, dir: 1, page: 0, size: 100, filters: C.map(() => ""), picked: new Set(), view: []};
  const palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
                   "#8C564B", "#7F7F7F", "#BCBD22", "#17BECF"];
  const esc = s => String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g,
    ch => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[ch]));
  const href = id => "runs/" + encodeURIComponent(id) + ".html";
  function num(v) { return typeof v === "number" && isFinite(v); }
  function fmt(c, v, row) {
    if (v === null || v === undefined) return '<span class="na">—</span>';
    if (c.fmt === "dur") { const s = Math.round(v); return Math.floor(s / 3600) + ":" + String(Math.floor(s % 3600 / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0"); }
    if (c.fmt === "steps") return v + " / " + (D.total[row] || "?");
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : esc(v.toPrecision(4).replace(/\.?0+(e|$)/, "$1"));
    return esc(v);
  }
  function matcher(c, text) {
    text = text.trim();
    if (!text) return null;
    if (c.type === "num") {
      let m = text.match(/^(-?[\d.e+-]+)\s*\.\.\s*(-?[\d.e+-]+)$/);
      if (m) { const a = +m[1], b = +m[2]; return v => num(v) && v >= a && v <= b; }
      m = text.match(/^(<=|>=|<|>|=)\s*(-?[\d.e+-]+)$/);
      if (m) {
        const x = +m[2];
        return {"<": v => num(v) && v < x, ">": v => num(v) && v > x, "<=": v => num(v) && v <= x,
                ">=": v => num(v) && v >= x, "=": v => v === x}[m[1]];
      }
    }
    const low = text.toLowerCase();
    return v => v !== null && v !== undefined && String(v).toLowerCase().includes(low);
  }
  function compute() {
    const tests = [];
    st.filters.forEach((f, i) => { const t = matcher(C[i], f); if (t) tests.push([i, t]); });
    const view = [];
    for (let r = 0; r < N; r++) {
      const row = R[r];
      if (tests.every(([i, t]) => t(row[i]))) view.push(r);
    }
    if (st.sort >= 0) {
      const i = st.sort, d = st.dir;
      view.sort((a, b) => {
        const x = R[a][i], y = R[b][i];
        const nx = x === null || x === undefined || (typeof x === "number" && !isFinite(x));
        const ny = y === null || y === undefined || (typeof y === "number" && !isFinite(y));
        if (nx || ny) return nx === ny ? a - b : (nx ? 1 : -1);  // missing values last, either way
        if (typeof x === "number" && typeof y === "number") return (x - y) * d || a - b;
        return String(x).localeCompare(String(y), undefined, {numeric: true}) * d || a - b;
      });
    }
    st.view = view;
    st.page = Math.min(st.page, Math.max(0, Math.ceil(view.length / st.size) - 1));
  }
  function renderTable() {
    const body = document.getElementById("rows"), start = st.page * st.size;
    const out = [];
    for (const r of st.view.slice(start, start + st.size)) {
      const row = R[r], id = row[RUN];
      const cells = C.map((c, i) => {
        if (i === RUN) return '<td class="mono run"><input type="checkbox" data-r="' + r + '"' + (st.picked.has(r) ? " checked" : "") +
          '> <a href="' + href(id) + '">' + esc(id) + "</a></td>";
        if (i === STATE) return '<td><span class="badge s-' + esc(row[i]) + '">' + esc(row[i]) + "</span></td>";
        return "<td" + (c.type === "num" ? ' class="num"' : (c.name === "note" ? ' class="note"' : "")) + ">" + fmt(c, row[i], r) + "</td>";
      });
      out.push('<tr data-r="' + r + '">' + cells.join("") + "</tr>");
    }
    body.innerHTML = out.join("");
    const pages = Math.max(1, Math.ceil(st.view.length / st.size));
    document.getElementById("count").textContent = st.view.length === N ? N + " runs" : st.view.length + " of " + N + " runs";
    document.getElementById("page").textContent = "rows " + (st.view.length ? start + 1 : 0) + "–" +
      Math.min(start + st.size, st.view.length) + " · page " + (st.page + 1) + " of " + pages;
    document.getElementById("prev").disabled = st.page === 0;
    document.getElementById("next").disabled = st.page >= pages - 1;
    document.querySelectorAll("th.sort").forEach(th => {
      const i = +th.dataset.c;
      th.classList.toggle("asc", i === st.sort && st.dir > 0);
      th.classList.toggle("desc", i === st.sort && st.dir < 0);
    });
  }
  function refresh() { compute(); renderTable(); renderBest(); }

  // --- best run per group -------------------------------------------------------------------------
  function renderBest() {
    const keys = [...document.querySelectorAll("#group-keys input:checked")].map(el => +el.value);
    const m = +document.getElementById("best-metric").value, higher = C[m] && C[m].higher;
    const groups = new Map();
    for (const r of st.view) {
      const k = JSON.stringify(keys.map(i => R[r][i]));
      if (!groups.has(k)) groups.set(k, {vals: keys.map(i => R[r][i]), n: 0, best: -1});
      const g = groups.get(k), v = R[r][m];
      g.n++;
      if (num(v) && (g.best < 0 || (higher ? v > R[g.best][m] : v < R[g.best][m]))) g.best = r;
    }
    const list = [...groups.values()].sort((a, b) => {
      for (let i = 0; i < keys.length; i++) {
        const x = a.vals[i], y = b.vals[i];
        if (x !== y) return typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
      }
      return 0;
    });
    const head = keys.map(i => "<th>" + esc(C[i].name) + "</th>").join("") + '<th class="num">runs</th><th>best run</th><th class="num">' +
      esc(C[m] ? C[m].name : "") + (higher ? " (highest)" : " (lowest)") + "</th>";
    const rows = list.slice(0, 500).map(g => "<tr>" + g.vals.map((v, j) => "<td>" + fmt(C[keys[j]], v, -1) + "</td>").join("") +
      '<td class="num">' + g.n + "</td>" + (g.best < 0 ? '<td class="na">no value yet</td><td></td>' :
      '<td class="mono"><input type="checkbox" data-r="' + g.best + '"' + (st.picked.has(g.best) ? " checked" : "") + '> <a href="' +
      href(R[g.best][RUN]) + '">' + esc(R[g.best][RUN]) + '</a></td><td class="num">' + fmt(C[m], R[g.best][m], g.best) + "</td>") + "</tr>");
    document.getElementById("best").innerHTML = "<thead><tr>" + head + "</tr></thead><tbody>" + rows.join("") + "</tbody>";
    document.getElementById("best-count").textContent = list.length + " group(s)" + (list.length > 500 ? ", first 500 shown" : "") +
      (st.view.length < N ? " among the " + st.view.length + " filtered runs" : "");
  }

  // --- curves of the picked runs ------------------------------------------------------------------
  const loaded = {}, waiting = {};
  window.jobkitCurves = function (n, data) { loaded[n] = data; (waiting[n] || []).forEach(f => f()); delete waiting[n]; };
  function chunk(n) {
    return new Promise((ok, fail) => {
      if (loaded[n]) return ok(loaded[n]);
      if (waiting[n]) { waiting[n].push(() => ok(loaded[n])); return; }
      waiting[n] = [() => ok(loaded[n])];
      const s = document.createElement("script");
      s.src = "curves/c" + String(n).padStart(4, "0") + ".js";
      s.onerror = () => { delete waiting[n]; fail(new Error("cannot load " + s.src)); };
      document.head.appendChild(s);
    });
  }
  function ticks(lo, hi, n) {
    const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= raw);
    const out = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
    return out;
  }
  function chart(tag, series) {
    const W = 560, H = 300, L = 62, Rm = 14, T = 28, B = 40, pw = W - L - Rm, ph = H - T - B;
    const pts = series.flatMap(s => s.xs.map((x, i) => [x, s.ys[i]]));
    let x0 = Math.min(...pts.map(p => p[0])), x1 = Math.max(...pts.map(p => p[0]));
    let y0 = Math.min(...pts.map(p => p[1])), y1 = Math.max(...pts.map(p => p[1]));
    if (x1 <= x0) x1 = x0 + 1;
    const log = y0 > 0 && y1 / y0 > 30;
    const fy0 = log ? Math.log10(y0) : y0 - (y1 - y0) * 0.04 - (y1 === y0 ? 0.5 : 0);
    const fy1 = log ? Math.log10(y1) : y1 + (y1 - y0) * 0.04 + (y1 === y0 ? 0.5 : 0);
    const fx = x => L + (x - x0) / (x1 - x0) * pw, fy = y => T + ph - ((log ? Math.log10(y) : y) - fy0) / (fy1 - fy0) * ph;
    const out = ['<svg class="chart" viewBox="0 0 ' + W + " " + H + '" width="' + W + '" height="' + H + '"><text x="' + L + '" y="18" class="title">' +
      esc(tag) + (log ? " (log)" : "") + '</text><rect x="' + L + '" y="' + T + '" width="' + pw + '" height="' + ph + '" class="plot"/>'];
    let yt = log ? [] : ticks(fy0, fy1, 5).filter(t => t >= fy0 && t <= fy1);
    if (log) {  // 1, 2, 5 times each power of ten in range (only the powers when that is too many)
      for (let e = Math.floor(fy0); e <= Math.ceil(fy1); e++) for (const m of [1, 2, 5]) {
        const t = m * Math.pow(10, e);
        if (t >= y0 && t <= y1) yt.push(t);
      }
      if (yt.length > 8) yt = yt.filter(t => String(t.toExponential()).startsWith("1"));
    }
    for (const t of yt) {
      const y = fy(t).toFixed(1);
      out.push('<line x1="' + L + '" x2="' + (L + pw) + '" y1="' + y + '" y2="' + y + '" class="grid"/><text x="' + (L - 6) +
        '" y="' + (+y + 4) + '" text-anchor="end" class="tick">' + (+t.toPrecision(3)) + "</text>");
    }
    for (const t of ticks(x0, x1, 6)) {
      if (t < x0 || t > x1) continue;
      out.push('<text x="' + fx(t).toFixed(1) + '" y="' + (T + ph + 16) + '" text-anchor="middle" class="tick">' + t + "</text>");
    }
    for (const s of series) {
      const coords = s.xs.map((x, i) => fx(x).toFixed(1) + "," + fy(s.ys[i]).toFixed(1)).join(" ");
      out.push('<g class="series"><title>' + esc(s.label) + '</title><polyline points="' + coords + '" fill="none" stroke="' + s.color + '" stroke-width="1.8"/></g>');
    }
    return "<figure>" + out.join("") + "</svg></figure>";
  }
  async function renderCurves() {
    const picked = [...st.picked], box = document.getElementById("curve-charts");
    document.getElementById("pick-note").textContent = picked.length ? picked.length + " run(s) picked" +
      (picked.length >= MAX_PICK ? " (the most at once)" : "") : "Tick runs in the table (or use the buttons) to draw their curves.";
    if (!picked.length) { box.innerHTML = ""; document.getElementById("curve-legend").innerHTML = ""; return; }
    let data;
    try { data = await Promise.all([...new Set(picked.map(r => D.chunk[r]))].map(chunk)); }
    catch (e) { box.textContent = String(e.message); return; }
    const byChunk = {};
    [...new Set(picked.map(r => D.chunk[r]))].forEach((n, i) => { byChunk[n] = data[i]; });
    const tags = [];
    for (const r of picked) for (const t of Object.keys(byChunk[D.chunk[r]][R[r][RUN]] || {})) if (!tags.includes(t)) tags.push(t);
    tags.sort((a, b) => (a === "train/loss" ? -2 : a === "val/val_loss" ? -1 : a.startsWith("val/") ? 0 : 1) -
                        (b === "train/loss" ? -2 : b === "val/val_loss" ? -1 : b.startsWith("val/") ? 0 : 1) || a.localeCompare(b));
    box.innerHTML = tags.slice(0, 6).map(tag => chart(tag, picked.map((r, i) => {
      const c = (byChunk[D.chunk[r]][R[r][RUN]] || {})[tag];
      return c ? {label: R[r][RUN], xs: c[0], ys: c[1], color: palette[i % palette.length]} : null;
    }).filter(Boolean))).join("");
    document.getElementById("curve-legend").innerHTML = picked.map((r, i) => '<span class="key"><span class="swatch" style="background:' +
      palette[i % palette.length] + '"></span><a class="mono" href="' + href(R[r][RUN]) + '">' + esc(R[r][RUN]) + "</a></span>").join("");
  }
  function pick(r, on) {
    if (on && st.picked.size >= MAX_PICK) return false;
    on ? st.picked.add(r) : st.picked.delete(r);
    return true;
  }

  // --- wiring -------------------------------------------------------------------------------------
  document.addEventListener("change", ev => {
    const el = ev.target;
    if (el.matches("input[type=checkbox][data-r]")) {
      if (!pick(+el.dataset.r, el.checked)) el.checked = false;
      document.querySelectorAll('input[data-r="' + el.dataset.r + '"]').forEach(x => { x.checked = el.checked; });
      renderCurves();
    } else if (el.closest("#group-keys") || el.id === "best-metric") renderBest();
    else if (el.id === "page-size") { st.size = +el.value; st.page = 0; renderTable(); }
  });
  document.querySelectorAll("input.f").forEach(el => el.addEventListener("input", () => {
    st.filters[+el.dataset.c] = el.value; st.page = 0; refresh();
  }));
  document.querySelectorAll("th.sort").forEach(th => th.addEventListener("click", () => {
    const i = +th.dataset.c;
    st.dir = st.sort === i ? -st.dir : 1; st.sort = i; refresh();
  }));
  document.getElementById("prev").onclick = () => { st.page--; renderTable(); };
  document.getElementById("next").onclick = () => { st.page++; renderTable(); };
  document.getElementById("pick-top").onclick = () => {
    st.picked.clear(); st.view.slice(st.page * st.size).slice(0, 8).forEach(r => pick(r, true)); renderTable(); renderBest(); renderCurves();
  };
  document.getElementById("pick-best").onclick = () => {
    st.picked.clear();
    document.querySelectorAll("#best input[data-r]").forEach(el => pick(+el.dataset.r, true));
    renderTable(); renderBest(); renderCurves();
  };
  document.getElementById("pick-clear").onclick = () => { st.picked.clear(); renderTable(); renderBest(); renderCurves(); };
  if (D.sort >= 0) { st.sort = D.sort; st.dir = C[D.sort].higher ? -1 : 1; }
  refresh();
  document.querySelectorAll("#best input[data-r]").forEach(el => pick(+el.dataset.r, true));  // start with the groups' best
  renderTable(); renderBest(); renderCurves();
  window.jobkitReady = performance.now();  // the table is drawn: what a benchmark times
  document.body.dataset.ready = "1";
})();
"""
