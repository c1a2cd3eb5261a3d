// View 4: the layer's load-balancing statistics over training: usage
// entropy, coefficient of variation and dead fraction, one line per run.

import {el, extent, frame, legend, linePath, svg} from './charts.js';

const STATISTICS = [
  {key: 'entropy', label: 'usage entropy', fixed: [0, 1]},
  {key: 'cv', label: 'CV of activity', fixed: null},
  {key: 'dead_fraction', label: 'dead fraction', fixed: null, least: 0.1},
];

export const statsView = {
  name: 'stats',
  title: 'Usage statistics over training',
  help: 'Normalised usage entropy (1 = every unit used equally), coefficient ' +
      'of variation of the units\' activities (0 = equal), and the fraction ' +
      'of dead (silent) units.',
  async draw(card, layer, runs, options) {
    const results = await Promise.all(
        runs.map((r) => options.load('stats', r.run, layer)));
    const steps = extent(results.map((d) => d.steps)) || [0, 1];
    const row = el('div', {class: 'stats-row'}, card);
    for (const statistic of STATISTICS) {
      drawStatistic(row, statistic, steps, runs, results);
    }
    legend(card, runs.map((r) => ({label: r.run, color: r.color})));
  },
};

function drawStatistic(parent, statistic, steps, runs, results) {
  const box = el('div', {class: 'stat', 'data-stat': statistic.key}, parent);
  el('div', {class: 'stat-title'}, box, statistic.label);
  const range = extent(results.map((d) => d[statistic.key])) || [0, 1];
  const top = Math.max(range[1] * 1.1, statistic.least || 1e-3);
  const y = statistic.fixed || [0, top];
  const chart = frame(box, {
    width: 140, height: 130, x: steps, y, xTicks: 3, yTicks: 3,
    margin: {left: 34, right: 14, bottom: 22}, label: statistic.label,
  });
  results.forEach((data, i) => {
    const line = svg('path', {
      d: linePath(data.steps, data[statistic.key], chart.x, chart.y), class: 'line',
      stroke: runs[i].color, 'data-run': runs[i].run, 'data-role': statistic.key,
      'data-points': data.steps.length,
    }, chart.plot);
    svg('title', {}, line, `${runs[i].run}: ${statistic.label}`);
  });
}
