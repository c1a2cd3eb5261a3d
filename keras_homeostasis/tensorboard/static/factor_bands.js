// View 3: how the scale factors of a layer's units spread over training:
// 5-95 % and 25-75 % quantile bands and the median, one colour per run.

import {bandPath, extent, frame, legend, linePath, svg} from './charts.js';

export const factorView = {
  name: 'factors',
  title: 'Scale factors over training',
  help: 'Distribution over units of the cumulative scale factor exp(G): ' +
      'light band 5–95 %, dark band 25–75 %, line: median. Unscaled runs ' +
      '(BatchNorm, plain) stay at 1. Where the rule holds the kernel norms ' +
      '(hold_norms=True, scale_invariant=True) exp(G) is each unit\'s kernel ' +
      'norm, and the chart says so.',
  async draw(card, layer, runs, options) {
    const results = await Promise.all(
        runs.map((r) => options.load('factors', r.run, layer)));
    const steps = extent(results.map((d) => d.steps)) || [0, 1];
    const values = extent(results.flatMap((d) => d.bands.slice(1, 6)), true);
    const [lo, hi] = values || [1, 1];
    const whats = runs.map((r) => factorName(r, layer));
    const yLabel = [...new Set(whats)].join(' or ');
    const chart = frame(card, {
      x: steps, y: [Math.min(lo, 1) / 1.2, Math.max(hi, 1) * 1.2], yLog: true,
      xLabel: 'step', yLabel, label: `${yLabel}s of ${layer}`,
    });
    results.forEach((data, i) => drawBands(chart, runs[i], data, whats[i]));
    legend(card, runs.map((r) => ({label: r.run, color: r.color})));
  },
};

// What a run's factors of `layer` are: cumulative scale factors, or the
// kernel norms the rule holds.
function factorName(run, layer) {
  const info = run.layers.find((l) => l.layer === layer);
  return info && info.factor === 'norm' ? 'kernel norm' : 'scale factor';
}

// Quantile bands of one run over steps (a /factors, /firing_rate or /spread
// response): the `outer` quantile band, the 25-75 % band and the median.
export function drawBands(chart, run, data, what, outer = [0.05, 0.95]) {
  const q = (p) => data.bands[data.quantiles.indexOf(p)];
  const common = {fill: run.color, 'data-run': run.run};
  const [lo, hi] = outer;
  svg('path', {...common, d: bandPath(data.steps, q(lo), q(hi), chart.x, chart.y),
    class: 'band outer', 'data-role': `band-${100 * lo}-${100 * hi}`}, chart.plot);
  svg('path', {...common, d: bandPath(data.steps, q(0.25), q(0.75), chart.x, chart.y),
    class: 'band inner', 'data-role': 'band-25-75'}, chart.plot);
  const median = svg('path', {
    d: linePath(data.steps, q(0.5), chart.x, chart.y), class: 'line',
    stroke: run.color, 'data-run': run.run, 'data-role': 'median',
    'data-points': data.steps.length, 'data-units': data.units,
  }, chart.plot);
  svg('title', {}, median, `${run.run}: median ${what}`);
}
