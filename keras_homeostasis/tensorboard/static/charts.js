// Small SVG chart toolkit of the Homeostasis dashboard: scales, axes, lines.
// Plain DOM and SVG only (no WebGL, nothing loaded from the network).

const SVG_NS = 'http://www.w3.org/2000/svg';

// Paul Tol's "bright" palette: distinguishable, colour-blind safe.
export const RUN_COLORS = [
  '#4477aa', '#ee6677', '#228833', '#ccbb44', '#66ccee', '#aa3377', '#bbbbbb',
];

export function runColor(index) {
  return RUN_COLORS[index % RUN_COLORS.length];
}

export function el(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

export function svg(tag, attrs = {}, parent = null, text = null) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
}

export function formatNumber(value) {
  if (value === null || !Number.isFinite(value)) return '–';
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e5)) return value.toExponential(1);
  return String(Number(value.toPrecision(3)));
}

// A scale maps a data value to a pixel; `ticks()` lists readable values.
export function linearScale(lo, hi, start, end) {
  if (!(hi > lo)) [lo, hi] = [lo - 0.5, lo + 0.5];
  const scale = (v) => start + ((v - lo) / (hi - lo)) * (end - start);
  scale.ticks = (count = 5) => niceTicks(lo, hi, count);
  scale.domain = [lo, hi];
  return scale;
}

export function logScale(lo, hi, start, end) {
  if (!(lo > 0)) lo = 1e-6;
  if (!(hi > lo)) [lo, hi] = [lo / 2, lo * 2];
  const a = Math.log10(lo);
  const b = Math.log10(hi);
  const scale = (v) => start + ((Math.log10(Math.max(v, lo)) - a) / (b - a)) * (end - start);
  scale.ticks = (count = 5) => logTicks(lo, hi, count);
  scale.domain = [lo, hi];
  return scale;
}

function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / Math.max(count, 1);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function logTicks(lo, hi, count) {
  const first = Math.ceil(Math.log10(lo));
  const last = Math.floor(Math.log10(hi));
  if (last - first < 1) return niceTicks(lo, hi, count).filter((v) => v > 0);
  const every = Math.ceil((last - first + 1) / count);
  const ticks = [];
  for (let p = first; p <= last; p += every) ticks.push(Math.pow(10, p));
  return ticks;
}

// Extent of the finite (and, for log scales, positive) numbers in `arrays`.
export function extent(arrays, positive = false) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const values of arrays) {
    for (const v of values) {
      if (v === null || !Number.isFinite(v) || (positive && v <= 0)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  return lo <= hi ? [lo, hi] : null;
}

// An SVG chart area with axes. Returns {root, plot, x, y, width, height}.
export function frame(parent, options) {
  const width = options.width || 440;
  const height = options.height || 220;
  const m = {top: 10, right: 12, bottom: 34, left: 52, ...(options.margin || {})};
  const root = svg('svg', {
    width, height, viewBox: `0 0 ${width} ${height}`, class: 'chart',
    role: 'img', 'aria-label': options.label || '',
  }, parent);
  const makeX = options.xLog ? logScale : linearScale;
  const makeY = options.yLog ? logScale : linearScale;
  const x = makeX(options.x[0], options.x[1], m.left, width - m.right);
  const y = makeY(options.y[0], options.y[1], height - m.bottom, m.top);
  drawAxes(root, x, y, m, width, height, options);
  const plot = svg('g', {class: 'plot'}, root);
  return {root, plot, x, y, width, height};
}

function drawAxes(root, x, y, m, width, height, options) {
  const axes = svg('g', {class: 'axes'}, root);
  const bottom = height - m.bottom;
  for (const t of y.ticks(options.yTicks || 4)) {
    const py = y(t);
    svg('line', {x1: m.left, x2: width - m.right, y1: py, y2: py, class: 'grid'}, axes);
    svg('text', {x: m.left - 4, y: py + 3, class: 'tick y'}, axes, formatNumber(t));
  }
  for (const t of x.ticks(options.xTicks || 5)) {
    const px = x(t);
    svg('line', {x1: px, x2: px, y1: bottom, y2: bottom + 4, class: 'tick-mark'}, axes);
    svg('text', {x: px, y: bottom + 15, class: 'tick x'}, axes, formatNumber(t));
  }
  svg('line', {x1: m.left, x2: width - m.right, y1: bottom, y2: bottom, class: 'axis'}, axes);
  svg('line', {x1: m.left, x2: m.left, y1: m.top, y2: bottom, class: 'axis'}, axes);
  if (options.xLabel) {
    svg('text', {x: (m.left + width - m.right) / 2, y: height - 3, class: 'label x'},
        axes, options.xLabel);
  }
  if (options.yLabel) {
    const cy = (m.top + bottom) / 2;
    svg('text', {x: 12, y: cy, class: 'label y', transform: `rotate(-90 12 ${cy})`},
        axes, options.yLabel);
  }
}

// Path data through (xs[i], ys[i]); a null value breaks the line.
export function linePath(xs, ys, x, y) {
  let d = '';
  let open = false;
  for (let i = 0; i < xs.length; i++) {
    const v = ys[i];
    if (v === null || !Number.isFinite(v)) {
      open = false;
      continue;
    }
    d += `${open ? 'L' : 'M'}${x(xs[i]).toFixed(1)},${y(v).toFixed(1)}`;
    open = true;
  }
  return d;
}

// Closed area between two series (for quantile bands), skipping gaps.
export function bandPath(xs, lows, highs, x, y) {
  const top = [];
  const under = [];
  for (let i = 0; i < xs.length; i++) {
    if (lows[i] === null || highs[i] === null) continue;
    top.push(`${x(xs[i]).toFixed(1)},${y(highs[i]).toFixed(1)}`);
    under.push(`${x(xs[i]).toFixed(1)},${y(lows[i]).toFixed(1)}`);
  }
  if (!top.length) return '';
  return `M${top.join('L')}L${under.reverse().join('L')}Z`;
}

export function legend(parent, entries) {
  const box = el('div', {class: 'legend'}, parent);
  for (const {label, color, dashed} of entries) {
    const item = el('span', {class: 'legend-item'}, box);
    el('span', {class: `swatch${dashed ? ' dashed' : ''}`, style: `--c: ${color}`}, item);
    el('span', {}, item, label);
  }
  return box;
}
