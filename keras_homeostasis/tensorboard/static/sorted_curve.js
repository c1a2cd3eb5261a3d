// View 2: per-unit activity at one step, sorted from most to least used,
// with the set point (target) dashed; one line per run on a log axis.

import {extent, frame, legend, linePath, svg} from './charts.js';

export const sortedView = {
  name: 'sorted',
  title: 'Sorted unit activity',
  help: 'Mean |activity| of each unit at the chosen step (nearest logged step ' +
      'of each run), most used first; dashed: the target. A flat curve on ' +
      'the target means every unit is used equally.',
  async draw(card, layer, runs, options) {
    const results = await Promise.all(
        runs.map((r) => options.load('sorted', r.run, layer)));
    const range = extent(results.flatMap((d) => [d.activity, d.target]), true);
    const [lo, hi] = range || [1e-3, 1];
    const chart = frame(card, {
      x: [0, 1], y: [lo / 1.5, hi * 1.5], yLog: true,
      xLabel: 'unit rank (fraction of units, most used first)',
      yLabel: 'mean |activity|', label: `sorted activity of ${layer}`,
    });
    const floor = chart.y.domain[0];
    results.forEach((data, i) => drawRun(chart, runs[i], data, floor));
    legend(card, results.map((data, i) => ({
      label: `${runs[i].run} (step ${data.step})`, color: runs[i].color,
    })).concat([{label: 'target', color: '#555', dashed: true}]));
  },
};

function drawRun(chart, run, data, floor) {
  const denominator = Math.max(data.units - 1, 1);
  const xs = data.ranks.map((r) => r / denominator);
  // Silent units sit on the floor of the log axis instead of vanishing.
  const activity = data.activity.map((v) => (v === null ? null : Math.max(v, floor)));
  svg('path', {
    d: linePath(xs, data.target, chart.x, chart.y), class: 'target',
    stroke: run.color, 'data-run': run.run, 'data-role': 'target',
  }, chart.plot);
  const line = svg('path', {
    d: linePath(xs, activity, chart.x, chart.y), class: 'line',
    stroke: run.color, 'data-run': run.run, 'data-role': 'activity',
    'data-points': xs.length, 'data-units': data.units, 'data-step': data.step,
  }, chart.plot);
  svg('title', {}, line, `${run.run}, step ${data.step}, ${data.units} units`);
}
