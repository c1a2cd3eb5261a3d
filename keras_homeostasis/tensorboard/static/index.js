// Entry point of the Homeostasis dashboard. TensorBoard loads this module in
// an iframe (data/plugin_entry.html?name=homeostasis) and calls render().
// Page state for tests and tools: document.body.dataset.status is
// "loading", then "ready", "empty" or "error".

import {cssUrl, getJson} from './static/api.js';
import {el, runColor} from './static/charts.js';
import {factorView} from './static/factor_bands.js';
import {firingView} from './static/firing.js';
import {heatmapView} from './static/heatmap.js';
import {sortedView} from './static/sorted_curve.js';
import {statsView} from './static/usage_stats.js';

const VIEWS = [heatmapView, sortedView, factorView, firingView, statsView];

export async function render() {
  document.body.dataset.status = 'loading';
  el('link', {rel: 'stylesheet', href: cssUrl()}, document.head);
  const app = el('div', {class: 'homeostasis'}, document.body);
  let listing;
  try {
    listing = await getJson('runs');
  } catch (error) {
    el('p', {class: 'error'}, app, `Could not list the runs: ${error.message}`);
    document.body.dataset.status = 'error';
    return;
  }
  if (!listing.runs.length) {
    showEmpty(app);
    return;
  }
  const dashboard = new Dashboard(app, listing.runs);
  await dashboard.drawAll();
  document.body.dataset.status = 'ready';
}

function showEmpty(app) {
  const box = el('div', {class: 'empty'}, app);
  el('h2', {}, box, 'No homeostasis data was found.');
  el('p', {}, box, 'Log runs with SynapticScalingCallback(log_dir=...) or ' +
      'keras_homeostasis.tensorboard.HomeostasisLogger(log_dir, probe_data=...).');
  document.body.dataset.status = 'empty';
}

class Dashboard {
  constructor(app, runs) {
    this.colors = new Map();  // Run name -> colour, stable across refreshes.
    this.hidden = new Set();
    this.step = null;  // null: the last logged step of each run.
    this.filter = '';
    this.generation = 0;
    this.bundles = new Map();  // "[run, layer]" -> promise of its views.
    this.buildControls(app);
    this.sections = VIEWS.map((view) => this.buildSection(app, view));
    this.setRuns(runs);
  }

  setRuns(runs) {
    for (const r of runs) {
      if (!this.colors.has(r.run)) this.colors.set(r.run, runColor(this.colors.size));
    }
    this.runs = runs.map((r) => ({
      ...r, color: this.colors.get(r.run), shown: !this.hidden.has(r.run),
    }));
    this.maxStep = Math.max(...runs.flatMap((r) => r.layers.map((l) => l.last_step)));
    this.slider.max = this.maxStep;
    if (this.step === null) this.slider.value = this.maxStep;
    this.drawRunToggles();
  }

  async refresh() {
    try {
      const listing = await getJson('runs');
      if (listing.runs.length) this.setRuns(listing.runs);
    } catch (error) {
      // Keep showing the last data; the next refresh may succeed.
    }
    await this.drawAll();
  }

  buildControls(app) {
    const bar = el('div', {class: 'controls'}, app);
    this.runBox = el('fieldset', {class: 'runs'}, bar);
    const filterBox = el('label', {class: 'filter'}, bar, 'Layers matching ');
    const filter = el('input', {type: 'search', placeholder: 'regular expression'},
        filterBox);
    filter.addEventListener('change', () => {
      this.filter = filter.value;
      this.drawAll();
    });
    this.buildStepSlider(bar);
    const reload = el('button', {type: 'button', class: 'refresh'}, bar, 'Refresh');
    reload.addEventListener('click', () => this.refresh());
  }

  drawRunToggles() {
    this.runBox.replaceChildren();
    el('legend', {}, this.runBox, 'Runs');
    for (const run of this.runs) {
      const label = el('label', {class: 'run-toggle'}, this.runBox);
      const box = el('input', {type: 'checkbox', 'data-run': run.run}, label);
      box.checked = run.shown;
      box.addEventListener('change', () => {
        run.shown = box.checked;
        if (box.checked) this.hidden.delete(run.run);
        else this.hidden.add(run.run);
        this.drawAll();
      });
      el('span', {class: 'swatch', style: `--c: ${run.color}`}, label);
      el('span', {}, label, run.run);
    }
  }

  buildStepSlider(bar) {
    const box = el('label', {class: 'step'}, bar, 'Step of the sorted curves ');
    const slider = el('input', {
      type: 'range', min: 0, max: 1, value: 1, step: 1, 'aria-label': 'step',
    }, box);
    this.slider = slider;
    const shown = el('span', {class: 'step-value'}, box, 'latest');
    slider.addEventListener('input', () => {
      const latest = Number(slider.value) >= this.maxStep;
      shown.textContent = latest ? 'latest' : slider.value;
    });
    slider.addEventListener('change', () => {
      const value = Number(slider.value);
      this.step = value >= this.maxStep ? null : value;
      this.drawSection(this.sections[VIEWS.indexOf(sortedView)], ++this.generation);
    });
  }

  buildSection(app, view) {
    const section = el('section', {class: 'view', 'data-view': view.name}, app);
    const header = el('div', {class: 'view-header'}, section);
    el('h2', {}, header, view.title);
    if (view.legend) view.legend(header);
    el('p', {class: 'help'}, section, view.help);
    const cards = el('div', {class: 'cards'}, section);
    return {view, section, cards};
  }

  layers() {
    let pattern = null;
    try {
      pattern = this.filter ? new RegExp(this.filter) : null;
    } catch (error) {
      pattern = null;
    }
    const names = [];
    for (const run of this.runs.filter((r) => r.shown)) {
      for (const layer of run.layers) {
        const keep = !pattern || pattern.test(layer.layer);
        if (keep && !names.includes(layer.layer)) names.push(layer.layer);
      }
    }
    return names;
  }

  async drawAll() {
    const generation = ++this.generation;
    this.bundles = new Map();
    document.body.dataset.status = 'loading';
    await Promise.all(this.sections.map((s) => this.drawSection(s, generation)));
    if (generation === this.generation) document.body.dataset.status = 'ready';
  }

  async drawSection(section, generation) {
    section.cards.replaceChildren();
    const jobs = this.layers().map((layer) => {
      const runs = this.runs.filter(
          (r) => r.shown && r.layers.some((l) => l.layer === layer));
      const card = el('div', {class: 'card', 'data-layer': layer}, section.cards);
      const units = runs[0].layers.find((l) => l.layer === layer).units;
      el('h3', {}, card, `${layer}`);
      el('span', {class: 'units'}, card.firstChild, ` ${units} units`);
      return this.drawCard(section.view, card, layer, runs, generation);
    });
    await Promise.all(jobs);
  }

  // One request per run and layer serves every view; a chosen step
  // re-requests the sorted curves only.
  load(view, run, layer) {
    if (view === 'sorted' && this.step !== null) {
      return getJson('sorted', {run, layer, step: this.step});
    }
    const key = JSON.stringify([run, layer]);
    if (!this.bundles.has(key)) this.bundles.set(key, getJson('layer', {run, layer}));
    return this.bundles.get(key).then((bundle) => bundle[view]);
  }

  async drawCard(view, card, layer, runs, generation) {
    try {
      await view.draw(card, layer, runs, {step: this.step, load: this.load.bind(this)});
      card.dataset.drawn = 'true';
    } catch (error) {
      if (generation !== this.generation) return;
      el('p', {class: 'error', 'data-error': 'true'}, card, error.message);
    }
  }
}
