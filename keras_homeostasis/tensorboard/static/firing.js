// View: the two statistics the rule controls, per unit, over training: the
// firing rate (fraction of positive pre-activations) and the pre-activation
// spread. Min-max and 25-75 % bands and the median, one colour per run.

import {el, extent, frame, legend} from './charts.js';
import {drawBands} from './factor_bands.js';

const PANELS = [
  {key: 'firing_rate', label: 'firing rate', log: false},
  {key: 'spread', label: 'pre-activation spread', log: true},
];

export const firingView = {
  name: 'firing',
  title: 'Firing rates and pre-activation spread over training',
  help: 'Distribution over units of the firing rate (fraction of positive ' +
      'pre-activations; probed layers: of positive outputs) and of the ' +
      'standard deviation of each unit\'s pre-activation: light band ' +
      'min–max, dark band 25–75 %, line: median. Scaling pulls both ' +
      'together; "not logged" marks runs without the statistic (older ' +
      'runs, or probed layers with a built-in activation).',
  async draw(card, layer, runs, options) {
    const results = await Promise.all(runs.map((r) => Promise.all(
        PANELS.map((panel) => options.load(panel.key, r.run, layer)))));
    const steps = extent(results.flatMap((pair) => pair.map((d) => d.steps))) ||
        [0, 1];
    const row = el('div', {class: 'stats-row'}, card);
    PANELS.forEach((panel, k) => {
      drawPanel(row, panel, layer, steps, runs, results.map((pair) => pair[k]));
    });
    legend(card, runs.map((r) => ({label: r.run, color: r.color})));
  },
};

function drawPanel(parent, panel, layer, steps, runs, results) {
  const box = el('div', {class: 'stat', 'data-stat': panel.key}, parent);
  el('div', {class: 'stat-title'}, box, panel.label);
  const measured = results.filter((d) => d.measured);
  const chart = frame(box, {
    width: 215, height: 160, x: steps, y: yRange(panel, measured), yLog: panel.log,
    xTicks: 3, yTicks: 4, margin: {left: 40, right: 12, bottom: 30},
    xLabel: 'step', label: `${panel.label} of ${layer}`,
  });
  results.forEach((data, i) => {
    if (data.measured) drawBands(chart, runs[i], data, panel.label, [0, 1]);
  });
  const missing = runs.filter((r, i) => !results[i].measured).map((r) => r.run);
  if (missing.length) {
    el('div', {class: 'note', 'data-unmeasured': missing.join(' ')}, box,
        `not logged: ${missing.join(', ')}`);
  }
}

function yRange(panel, measured) {
  if (!panel.log) return [0, 1];  // A rate.
  const range = extent(measured.flatMap((d) => d.bands), true);
  const [lo, hi] = range || [0.1, 10];
  return [lo / 1.5, hi * 1.5];
}
