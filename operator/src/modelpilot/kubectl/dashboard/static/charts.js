// Small SVG charts for the dashboard: line (or step) charts over time, horizontal bars, and stacked bars of
// weights per row. Every string from the cluster or a file goes in as text (textContent), never as markup.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2f6fde", "#e8793a", "#1a7f37", "#8250df", "#bf3989", "#0a7d8c", "#9a6700", "#57606a"];

  function el(name, attributes, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function tooltip(node, text) {
    node.appendChild(el("title", {}, text));
    return node;
  }

  function frame(width, height, title) {
    const svg = el("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    svg.appendChild(el("title", {}, title));
    svg.appendChild(el("text", { x: 8, y: 14, class: "chart-title" }, title));
    return svg;
  }

  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function format(value) {
    if (value === null || value === undefined || Number.isNaN(Number(value))) return "-";
    const number = Number(value);
    if (number === 0 || Math.abs(number) >= 100) return String(Math.round(number));
    if (Math.abs(number) < 0.01) return number.toPrecision(2);
    return String(Math.round(number * 1000) / 1000);
  }

  // points: [{time: ISO string, value: number, cls?: string, label?: string}]; options: {title, yMax, step, threshold, unit}
  function timeChart(points, options) {
    const width = options.width || 520, height = options.height || 200;
    const left = 48, right = 12, top = 24, bottom = 28;
    const svg = frame(width, height, options.title);
    const usable = points.filter((p) => p.value !== null && p.value !== undefined && !Number.isNaN(Date.parse(p.time)));
    if (!usable.length) {
      svg.appendChild(el("text", { x: left, y: height / 2 }, "no data yet"));
      return svg;
    }
    const times = usable.map((p) => Date.parse(p.time));
    let t0 = Math.min(...times), t1 = Math.max(...times);
    if (t1 === t0) { t0 -= 30000; t1 += 30000; }
    const values = usable.map((p) => p.value).concat(options.threshold !== undefined ? [options.threshold] : []);
    const yMax = options.yMax !== undefined ? options.yMax : niceMax(Math.max(...values));
    const x = (t) => left + ((t - t0) / (t1 - t0)) * (width - left - right);
    const y = (v) => top + (1 - Math.min(Math.max(v, 0), yMax) / yMax) * (height - top - bottom);
    for (const fraction of [0, 0.25, 0.5, 0.75, 1]) {
      const value = yMax * fraction;
      svg.appendChild(el("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), class: "grid" }));
      svg.appendChild(el("text", { x: left - 6, y: y(value) + 4, "text-anchor": "end" }, format(value) + (options.unit || "")));
    }
    svg.appendChild(el("line", { x1: left, x2: left, y1: top, y2: height - bottom, class: "axis" }));
    svg.appendChild(el("line", { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: "axis" }));
    svg.appendChild(el("text", { x: left, y: height - 8 }, new Date(t0).toISOString().slice(11, 19)));
    svg.appendChild(el("text", { x: width - right, y: height - 8, "text-anchor": "end" }, new Date(t1).toISOString().slice(11, 19)));
    if (options.threshold !== undefined && options.threshold !== null) {
      const ty = y(options.threshold);
      svg.appendChild(tooltip(el("line", { x1: left, x2: width - right, y1: ty, y2: ty, class: "threshold" }), `limit ${format(options.threshold)}`));
    }
    let d = "";
    usable.forEach((p, index) => {
      const px = x(Date.parse(p.time)), py = y(p.value);
      if (index === 0) d += `M${px},${py}`;
      else if (options.step) d += `H${px}V${py}`;
      else d += `L${px},${py}`;
    });
    svg.appendChild(el("path", { d, class: "line" }));
    for (const p of usable) {
      const dot = el("circle", { cx: x(Date.parse(p.time)), cy: y(p.value), r: 3.5, class: `point ${p.cls || ""}` });
      svg.appendChild(tooltip(dot, `${p.time}: ${format(p.value)}${options.unit || ""}${p.label ? " — " + p.label : ""}`));
    }
    return svg;
  }

  // bars: [{label, value, over}]; options: {title, threshold}
  function barChart(bars, options) {
    const width = options.width || 520, row = 20, top = 24, left = 150, right = 60;
    const height = top + Math.max(bars.length, 1) * row + 10;
    const svg = frame(width, height, options.title);
    const values = bars.map((b) => b.value || 0).concat(options.threshold ? [options.threshold] : []);
    const max = niceMax(Math.max(...values, 0));
    const x = (v) => left + (Math.max(v, 0) / max) * (width - left - right);
    bars.forEach((bar, index) => {
      const y = top + index * row;
      svg.appendChild(el("text", { x: left - 6, y: y + 14, "text-anchor": "end" }, bar.label));
      const rect = el("rect", { x: left, y: y + 3, width: Math.max(x(bar.value || 0) - left, 1), height: row - 6, class: `bar${bar.over ? " over" : ""}`, "data-label": bar.label });
      svg.appendChild(tooltip(rect, `${bar.label}: ${format(bar.value)}`));
      svg.appendChild(el("text", { x: x(bar.value || 0) + 4, y: y + 14 }, format(bar.value)));
    });
    if (options.threshold) {
      const tx = x(options.threshold);
      svg.appendChild(tooltip(el("line", { x1: tx, x2: tx, y1: top, y2: height - 6, class: "threshold" }), `threshold ${format(options.threshold)}`));
    }
    return svg;
  }

  // rows: [[weight per expert]] (each row sums to 1); one rect per row and expert, the experts side by side.
  function stackedBars(rows, options) {
    const experts = rows.reduce((most, r) => Math.max(most, r.length), 0);
    const width = options.width || 520, row = 18, top = 24, left = 60, right = 12, legend = 22;
    const height = top + rows.length * row + legend + 8;
    const svg = frame(width, height, options.title);
    const span = width - left - right;
    rows.forEach((weights, index) => {
      const y = top + index * row;
      svg.appendChild(el("text", { x: left - 6, y: y + 13, "text-anchor": "end" }, `row ${index + 1}`));
      let offset = 0;
      weights.forEach((weight, expert) => {
        const rect = el("rect", {
          x: left + offset * span, y: y + 2, width: Math.max(weight * span, 0), height: row - 4,
          fill: PALETTE[expert % PALETTE.length], class: "gate", "data-row": index, "data-expert": expert,
        });
        svg.appendChild(tooltip(rect, `row ${index + 1}, expert ${expert}: ${format(weight)}`));
        offset += weight;
      });
    });
    for (let expert = 0; expert < experts; expert++) {
      const lx = left + expert * 90, ly = top + rows.length * row + 10;
      svg.appendChild(el("rect", { x: lx, y: ly, width: 10, height: 10, fill: PALETTE[expert % PALETTE.length] }));
      svg.appendChild(el("text", { x: lx + 14, y: ly + 9 }, `expert ${expert}`));
    }
    return svg;
  }

  window.Charts = { timeChart, barChart, stackedBars, format };
})();
