// flow's charts: SVG line charts for the dashboard, no dependencies.
//
// A chart is a <div class="chart"> whose attributes say what to draw:
//   data-series  "|"-separated URLs answering {points: [[x, y|null], ...], first_step, last_step, total_points}
//   data-labels  "|"-separated legend labels (default: data-title)
//   data-levels  JSON [{label, value}]: horizontal threshold lines
//   data-shaded  JSON [[x0, x1], ...]: shaded x ranges (true anomaly segments)
//   data-x-label axis label
// Drag across a chart to zoom (the server sends full detail for the range), double-click
// to zoom out. After drawing, data-state="drawn", data-points (points drawn) and
// data-render-ms (request to drawn) are set, which the browser tests read.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const COLORS = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"];
  const LEVEL_COLORS = { pot: "#dc2626", epsilon: "#16a34a", best: "#9333ea" };
  const MARGIN = { left: 58, right: 12, top: 10, bottom: 34 };

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function json(text, fallback) {
    if (!text) return fallback;
    try { return JSON.parse(text); } catch (e) { return fallback; }
  }

  // Round tick values: 1, 2 or 5 times a power of ten.
  function ticks(min, max, count) {
    if (!(max > min)) { const d = Math.abs(min) || 1; min -= d / 2; max += d / 2; }
    const raw = (max - min) / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  function format(v) {
    if (v === null || v === undefined || !isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    if (Number.isInteger(v)) return String(v);
    return String(+v.toPrecision(5));
  }

  // Draws `series` ([{label, points}]) into `box`; `options`: levels, shaded, xLabel, onZoom.
  function render(box, series, options) {
    box.innerHTML = "";
    const width = Math.max(320, box.clientWidth || 640);
    const height = box.classList.contains("tall") ? 320 : 220;
    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart-svg" }, box);
    let xMin = Infinity, xMax = -Infinity, yMin = Infinity, yMax = -Infinity, drawn = 0;
    for (const s of series) {
      for (const [x, y] of s.points) {
        if (x < xMin) xMin = x;
        if (x > xMax) xMax = x;
        if (y !== null && isFinite(y)) { if (y < yMin) yMin = y; if (y > yMax) yMax = y; }
      }
      drawn += s.points.length;
    }
    for (const level of options.levels || []) {
      if (isFinite(level.value)) { yMin = Math.min(yMin, level.value); yMax = Math.max(yMax, level.value); }
    }
    if (!isFinite(xMin)) {
      el("text", { x: 10, y: 20, class: "chart-empty" }, svg).textContent = "no points";
      box.dataset.state = "drawn";
      box.dataset.points = "0";
      return;
    }
    if (options.range) { xMin = options.range[0]; xMax = options.range[1]; }
    if (xMax === xMin) { xMin -= 1; xMax += 1; }
    if (!isFinite(yMin)) { yMin = 0; yMax = 1; }
    const pad = (yMax - yMin) * 0.05 || Math.abs(yMax) * 0.05 || 1;
    yMin -= pad; yMax += pad;
    const plotW = width - MARGIN.left - MARGIN.right;
    const plotH = height - MARGIN.top - MARGIN.bottom;
    const sx = (x) => MARGIN.left + ((x - xMin) / (xMax - xMin)) * plotW;
    const sy = (y) => MARGIN.top + (1 - (y - yMin) / (yMax - yMin)) * plotH;

    const clip = "clip" + Math.random().toString(36).slice(2);
    const defs = el("defs", {}, svg);
    el("rect", { x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH }, el("clipPath", { id: clip }, defs));
    const plot = el("g", { "clip-path": `url(#${clip})` }, svg);

    for (const [a, b] of options.shaded || []) {
      if (b < xMin || a > xMax) continue;
      const x0 = sx(Math.max(a, xMin)), x1 = sx(Math.min(b, xMax));
      el("rect", { x: x0, y: MARGIN.top, width: Math.max(1, x1 - x0), height: plotH, class: "shaded" }, plot);
    }
    for (const v of ticks(yMin, yMax, 5)) {
      el("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: sy(v), y2: sy(v), class: "grid" }, svg);
      el("text", { x: MARGIN.left - 6, y: sy(v) + 4, class: "tick", "text-anchor": "end" }, svg).textContent = format(v);
    }
    for (const v of ticks(xMin, xMax, Math.max(2, Math.floor(plotW / 90)))) {
      el("text", { x: sx(v), y: height - MARGIN.bottom + 16, class: "tick", "text-anchor": "middle" }, svg).textContent = format(v);
    }
    if (options.xLabel) {
      el("text", { x: width - MARGIN.right, y: height - 4, class: "axis-label", "text-anchor": "end" }, svg).textContent = options.xLabel;
    }
    series.forEach((s, i) => {
      let d = "", pen = false;
      for (const [x, y] of s.points) {
        if (y === null || !isFinite(y)) { pen = false; continue; }
        d += (pen ? "L" : "M") + sx(x).toFixed(1) + "," + sy(y).toFixed(1);
        pen = true;
      }
      const color = s.color || COLORS[i % COLORS.length];
      el("path", { d, class: "line", stroke: color }, plot);
      // Few points (an epoch curve, a single value): mark each one.
      if (s.points.length <= 60) {
        for (const [x, y] of s.points) {
          if (y !== null && isFinite(y)) el("circle", { cx: sx(x), cy: sy(y), r: 2.5, fill: color }, plot);
        }
      }
    });
    // Threshold lines; their labels stack downwards when the lines are close together.
    let labelY = -Infinity;
    const levels = (options.levels || []).filter((l) => isFinite(l.value)).sort((a, b) => b.value - a.value);
    for (const level of levels) {
      const color = LEVEL_COLORS[level.label] || "#555";
      el("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: sy(level.value), y2: sy(level.value), class: "level", stroke: color }, plot);
      labelY = Math.max(sy(level.value) - 4, labelY + 12);
      el("text", { x: width - MARGIN.right - 4, y: labelY, class: "level-label", fill: color, "text-anchor": "end" }, svg)
        .textContent = `${level.label} ${format(level.value)}`;
    }
    el("rect", { x: MARGIN.left, y: MARGIN.top, width: plotW, height: plotH, class: "frame" }, svg);

    if (series.length > 1 || (series[0] && series[0].label)) {
      const legend = document.createElement("div");
      legend.className = "legend";
      series.forEach((s, i) => {
        const item = document.createElement("span");
        item.innerHTML = `<i style="background:${s.color || COLORS[i % COLORS.length]}"></i>`;
        item.appendChild(document.createTextNode(s.label || ""));
        legend.appendChild(item);
      });
      box.appendChild(legend);
    }

    // Hover: the nearest point of each series; drag: zoom to the selected x range.
    const hover = el("line", { y1: MARGIN.top, y2: MARGIN.top + plotH, class: "hover", visibility: "hidden" }, svg);
    const select = el("rect", { y: MARGIN.top, height: plotH, class: "selection", visibility: "hidden" }, svg);
    const tip = document.createElement("div");
    tip.className = "tooltip";
    box.appendChild(tip);
    const toX = (event) => {
      const r = svg.getBoundingClientRect();
      return Math.min(width - MARGIN.right, Math.max(MARGIN.left, event.clientX - r.left));
    };
    const fromPx = (px) => xMin + ((px - MARGIN.left) / plotW) * (xMax - xMin);
    let dragStart = null;
    svg.addEventListener("mousedown", (event) => { dragStart = toX(event); event.preventDefault(); });
    svg.addEventListener("mousemove", (event) => {
      const px = toX(event);
      hover.setAttribute("x1", px); hover.setAttribute("x2", px); hover.setAttribute("visibility", "visible");
      const x = fromPx(px);
      const lines = series.map((s) => {
        let best = null;
        for (const p of s.points) if (best === null || Math.abs(p[0] - x) < Math.abs(best[0] - x)) best = p;
        return best ? `${s.label || "value"}: ${format(best[1])} @ ${format(best[0])}` : "";
      });
      tip.textContent = lines.filter(Boolean).join("\n");
      tip.style.left = Math.min(px + 12, width - 180) + "px";
      tip.style.display = "block";
      if (dragStart !== null) {
        select.setAttribute("x", Math.min(dragStart, px));
        select.setAttribute("width", Math.abs(px - dragStart));
        select.setAttribute("visibility", "visible");
      }
    });
    svg.addEventListener("mouseleave", () => { hover.setAttribute("visibility", "hidden"); tip.style.display = "none"; });
    svg.addEventListener("mouseup", (event) => {
      const end = toX(event);
      select.setAttribute("visibility", "hidden");
      if (dragStart !== null && Math.abs(end - dragStart) > 4 && options.onZoom) {
        const a = fromPx(Math.min(dragStart, end)), b = fromPx(Math.max(dragStart, end));
        options.onZoom([Math.floor(a), Math.ceil(b)]);
      }
      dragStart = null;
    });
    svg.addEventListener("dblclick", () => { if (options.onZoom) options.onZoom(null); });
    box.dataset.state = "drawn";
    box.dataset.points = String(drawn);
    box.dataset.xMin = String(xMin);
    box.dataset.xMax = String(xMax);
  }

  // Fetches a chart's series (for `range`, when zoomed) and draws them.
  async function load(box, range) {
    const started = performance.now();
    const sources = (box.dataset.series || "").split("|").filter(Boolean);
    const labels = (box.dataset.labels || box.dataset.title || "").split("|");
    const buckets = Math.max(100, Math.min(2000, Math.round(box.clientWidth || 800)));
    box.dataset.state = "loading";
    try {
      const series = await Promise.all(sources.map(async (src, i) => {
        const params = new URLSearchParams({ points: String(buckets) });
        if (range) { params.set("from", String(range[0])); params.set("to", String(range[1])); }
        const url = src + (src.includes("?") ? "&" : "?") + params;
        const response = await fetch(url);
        const body = await response.json();
        if (!response.ok) throw new Error(body.message || response.statusText);
        return { label: labels[i] || labels[0] || "", points: body.points, total: body.total_points };
      }));
      render(box, series, {
        levels: json(box.dataset.levels, []),
        shaded: json(box.dataset.shaded, []),
        xLabel: box.dataset.xLabel || "step",
        range,
        onZoom: (next) => load(box, next),
      });
      box.dataset.zoomed = range ? "1" : "0";
      box.dataset.totalPoints = String(series.reduce((n, s) => n + (s.total || 0), 0));
      box.dataset.renderMs = String(Math.round(performance.now() - started));
    } catch (error) {
      box.dataset.state = "error";
      box.innerHTML = "";
      const message = document.createElement("p");
      message.className = "error";
      message.textContent = "cannot draw this chart: " + error.message;
      box.appendChild(message);
    }
  }

  window.FlowChart = { load, render };
})();
