// View 1: each unit's activity relative to its layer's mean, over training.
// One 2D canvas per run; rows are units sorted from most to least used.

import {el, formatNumber} from './charts.js';

const WIDTH = 420;
const HEIGHT = 150;
// Colour saturates at 2^(COLOR_CLIP / 10) times (or 1/that of) the layer mean.
const COLOR_CLIP = 40;
const ABOVE = [178, 24, 43];
const BELOW = [33, 102, 172];
const SILENT = [70, 70, 70];

export const heatmapView = {
  name: 'heatmap',
  title: 'Unit activity over training',
  help: 'Each row is a unit (most used at the top), each column a logged step. ' +
      'Colour: activity relative to the layer mean at that step ' +
      '(white = mean, red = above, blue = below, grey = silent).',
  legend: heatmapLegend,
  async draw(card, layer, runs, options) {
    const results = await Promise.all(
        runs.map((r) => options.load('heatmap', r.run, layer)));
    results.forEach((data, i) => drawRun(card, runs[i], data));
  },
};

function drawRun(card, run, data) {
  const block = el('div', {class: 'heatmap-run', 'data-run': run.run}, card);
  const title = el('div', {class: 'run-label'}, block);
  el('span', {class: 'swatch', style: `--c: ${run.color}`}, title);
  el('span', {}, title, `${run.run}: ${data.units} units` +
      (data.rows < data.units ? ` in ${data.rows} rank groups` : ''));
  const canvas = el('canvas', {
    class: 'heatmap', width: WIDTH, height: HEIGHT,
    'data-run': run.run, 'data-rows': data.rows, 'data-cols': data.steps.length,
    'data-units': data.units,
  }, block);
  paint(canvas, data);
  const steps = data.steps;
  const axis = el('div', {class: 'heatmap-axis'}, block);
  el('span', {}, axis, `step ${steps[0] ?? '–'}`);
  el('span', {}, axis, 'training step →');
  el('span', {}, axis, `step ${steps[steps.length - 1] ?? '–'}`);
  canvas.title = `${run.run}: layer mean ${formatNumber(data.layer_mean.at(-1))} ` +
      `at step ${steps.at(-1)}`;
}

function paint(canvas, data) {
  const cols = data.steps.length;
  const rows = data.rows;
  if (!cols || !rows) return;
  const cells = document.createElement('canvas');
  cells.width = cols;
  cells.height = rows;
  const context = cells.getContext('2d');
  const image = context.createImageData(cols, rows);
  for (let r = 0; r < rows; r++) {
    const row = data.values[r];
    for (let c = 0; c < cols; c++) {
      const rgb = color(row[c]);
      const k = 4 * (r * cols + c);
      image.data[k] = rgb[0];
      image.data[k + 1] = rgb[1];
      image.data[k + 2] = rgb[2];
      image.data[k + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
  const target = canvas.getContext('2d');
  target.imageSmoothingEnabled = false;
  target.drawImage(cells, 0, 0, canvas.width, canvas.height);
}

export function color(tenths) {
  if (tenths === null) return SILENT;
  const t = Math.max(-1, Math.min(1, tenths / COLOR_CLIP));
  const end = t > 0 ? ABOVE : BELOW;
  const w = Math.abs(t);
  return end.map((v) => Math.round(255 + (v - 255) * w));
}

function heatmapLegend(parent) {
  const box = el('div', {class: 'heatmap-legend'}, parent);
  const times = Math.pow(2, COLOR_CLIP / 10);
  el('span', {}, box, `≤ 1/${times}× mean`);
  el('span', {class: 'gradient'}, box);
  el('span', {}, box, `≥ ${times}× mean`);
  el('span', {class: 'swatch', style: `--c: rgb(${SILENT.join(',')})`}, box);
  el('span', {}, box, 'silent');
}
