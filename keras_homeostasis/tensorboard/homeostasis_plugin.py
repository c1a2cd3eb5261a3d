"""`HomeostasisPlugin`: the backend of TensorBoard's Homeostasis tab."""

import collections
import logging
import os
import re
import threading

import numpy as np
from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from keras_homeostasis.tensorboard import metadata
from keras_homeostasis.tensorboard import views

logger = logging.getLogger(__name__)

# Logged steps kept per layer by TensorBoard (reservoir sampling) unless the
# user passes `--samples_per_plugin homeostasis=N`; set by HomeostasisLoader.
DEFAULT_SAMPLES = 1000

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_]+\.(js|css)$")
_CONTENT_TYPES = {"js": "text/javascript", "css": "text/css"}

# Parsed series kept in memory, most recently used last.
_CACHE_SIZE = 16


class HomeostasisPlugin(base_plugin.TBPlugin):
    """Serves the Homeostasis dashboard: unit usage and scaling per layer.

    Data are read through `context.data_provider` (summaries written by
    `keras_homeostasis.tensorboard.summary.unit_usage`), downsampled here
    (see `keras_homeostasis.tensorboard.views` for the size bounds), and
    returned as JSON through `http_util.Respond`, which adds TensorBoard's
    security headers. Routes, under `/data/plugin/homeostasis`:

    - `/runs`: runs and their layers (units, whether scaled, last step);
    - `/heatmap?run=&layer=[&steps=&rows=]`: relative unit activity;
    - `/sorted?run=&layer=[&step=&points=]`: sorted activity and target;
    - `/factors?run=&layer=[&steps=]`: scale factor quantiles over steps;
    - `/stats?run=&layer=[&steps=]`: entropy, CV and dead fraction;
    - `/firing_rate?run=&layer=[&steps=]`: firing rate quantiles over steps;
    - `/spread?run=&layer=[&steps=]`: pre-activation spread quantiles over
      steps (`measured` is false where the run did not log it);
    - `/layer?run=&layer=[&step=]`: the views above at their default
      bounds, in one response (what the dashboard requests);
    - `/index.js`, `/static/<file>`: the frontend (an allow-list of files).

    A missing argument answers 400, an unknown run or layer 404, both with
    a JSON `{"error": message}`. Unreadable series are skipped, never fatal.
    Runs written in the first summary layout (before firing rates and
    spreads were logged) are served too, with those two not `measured`.

    Args:
        context: the `base_plugin.TBContext` given by TensorBoard.
    """

    plugin_name = metadata.PLUGIN_NAME

    def __init__(self, context):
        self._data_provider = context.data_provider
        hints = context.sampling_hints or {}
        self._samples = hints.get(metadata.PLUGIN_NAME, DEFAULT_SAMPLES)
        self._cache = collections.OrderedDict()
        self._lock = threading.Lock()
        self._key_locks = {}
        self._static = _static_files()

    def get_plugin_apps(self):
        return {
            "/index.js": self._serve_index,
            "/static/*": self._serve_static,
            "/runs": self._json(self._runs),
            "/layer": self._json(self._layer),
            "/heatmap": self._view(self._heatmap),
            "/sorted": self._view(self._sorted),
            "/factors": self._view(self._factors),
            "/stats": self._view(self._stats),
            "/firing_rate": self._view(self._firing_rate),
            "/spread": self._view(self._spread),
        }

    def is_active(self):
        return False  # TensorBoard's own listing of plugins with data suffices.

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(
            es_module_path="/index.js", tab_name="Homeostasis"
        )

    # Static files.

    @wrappers.Request.application
    def _serve_index(self, request):
        return self._static_response(request, "index.js")

    @wrappers.Request.application
    def _serve_static(self, request):
        return self._static_response(request, request.path.partition("/static/")[2])

    def _static_response(self, request, name):
        # Only names listed at start-up are served: no path ever reaches open().
        if name not in self._static:
            return http_util.Respond(request, "Not found", "text/plain", code=404)
        with open(self._static[name], "rb") as f:
            body = f.read()
        kind = _CONTENT_TYPES[name.rsplit(".", 1)[1]]
        return http_util.Respond(request, body, kind)

    # JSON routes.

    def _json(self, handler):
        @wrappers.Request.application
        def app(request):
            try:
                body, code = handler(request), 200
            except errors.PublicError as error:
                body, code = {"error": str(error)}, error.http_code
            except Exception:  # A bad file must not take the dashboard down.
                logger.exception("Homeostasis plugin failed on %s", request.url)
                body = {"error": "Internal error while reading homeostasis data."}
                code = 500
            return http_util.Respond(request, body, "application/json", code=code)

        return app

    def _runs(self, request):
        ctx, eid = _request_context(request)
        listing = self._list(ctx, eid)
        runs = []
        for run in sorted(listing):
            layers = []
            for tag, series in sorted(listing[run].items()):
                info = _parse(series)
                if info is not None:
                    layers.append(
                        {"layer": tag, **info, "last_step": int(series.max_step)}
                    )
            if layers:
                runs.append({"run": run, "layers": layers})
        return {"runs": runs}

    def _view(self, build):
        """A route answering one view of the requested run and layer."""
        return self._json(lambda request: build(request.args, *self._series(request)))

    def _layer(self, request):
        # Every view at its default bounds in one response: a dashboard of
        # L layers and R runs makes L * R requests instead of 6 * L * R.
        steps, split = self._series(request)
        args = {"step": request.args.get("step", "")}
        return {
            "heatmap": self._heatmap(args, steps, split),
            "sorted": self._sorted(args, steps, split),
            "factors": self._factors(args, steps, split),
            "stats": self._stats(args, steps, split),
            "firing_rate": self._firing_rate(args, steps, split),
            "spread": self._spread(args, steps, split),
        }

    def _heatmap(self, args, steps, split):
        return views.heatmap(
            steps,
            split["activity"],
            _int_arg(args, "steps", views.DEFAULTS["heatmap_steps"], 1, 500),
            _int_arg(args, "rows", views.DEFAULTS["heatmap_rows"], 1, 256),
        )

    def _sorted(self, args, steps, split):
        step = args.get("step")
        return views.sorted_curve(
            steps,
            split["activity"],
            split["target"],
            None if step in (None, "") else _int_arg(args, "step", 0, 0, 2**62),
            _int_arg(args, "points", views.DEFAULTS["curve_points"], 2, 1024),
        )

    def _factors(self, args, steps, split):
        limit = _int_arg(args, "steps", 400, 1, views.MAX_SERIES_STEPS)
        return views.factor_bands(steps, split["factor"], limit)

    def _firing_rate(self, args, steps, split):
        limit = _int_arg(args, "steps", 400, 1, views.MAX_SERIES_STEPS)
        return views.quantile_bands(steps, split["firing_rate"], limit)

    def _spread(self, args, steps, split):
        limit = _int_arg(args, "steps", 400, 1, views.MAX_SERIES_STEPS)
        return views.quantile_bands(steps, split["spread"], limit)

    def _stats(self, args, steps, split):
        limit = _int_arg(args, "steps", 400, 1, views.MAX_SERIES_STEPS)
        series = {name: split[name] for name in metadata.STATISTICS}
        return views.statistics(steps, series, limit)

    # Reading.

    def _list(self, ctx, eid, run=None):
        run_filter = None if run is None else provider.RunTagFilter(runs=[run])
        return self._data_provider.list_tensors(
            ctx,
            experiment_id=eid,
            plugin_name=metadata.PLUGIN_NAME,
            run_tag_filter=run_filter,
        )

    def _series(self, request):
        """`(steps[T], unpacked arrays)` of the requested run and layer."""
        run, layer = _required(request, "run"), _required(request, "layer")
        ctx, eid = _request_context(request)
        series = self._list(ctx, eid, run).get(run, {}).get(layer)
        info = None if series is None else _parse(series)
        if info is None:
            self._raise_not_found(ctx, eid, run, layer)
        key = (eid, run, layer, series.max_step, series.max_wall_time)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        # The views of a layer are requested together: read it once.
        with key_lock:
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    return cached
            cached = self._read(ctx, eid, run, layer)
            with self._lock:
                self._cache[key] = cached
                while len(self._cache) > _CACHE_SIZE:
                    old, _ = self._cache.popitem(last=False)
                    self._key_locks.pop(old, None)
        return cached

    def _read(self, ctx, eid, run, layer):
        data = self._data_provider.read_tensors(
            ctx,
            experiment_id=eid,
            plugin_name=metadata.PLUGIN_NAME,
            downsample=self._samples,
            run_tag_filter=provider.RunTagFilter(runs=[run], tags=[layer]),
        )
        by_step = {}
        for datum in data.get(run, {}).get(layer, []):
            value = np.asarray(datum.numpy)
            # Skip values of no known layout (a corrupt or foreign summary);
            # older layouts are read in the current one.
            if metadata.layout_of(value) is not None:
                by_step[int(datum.step)] = metadata.upgrade(value)
        if not by_step:
            raise errors.NotFoundError(
                f"Layer {layer!r} of run {run!r} has no readable homeostasis data."
            )
        steps = _latest_width_steps(by_step)
        rows = np.stack([by_step[s] for s in steps])
        units = metadata.units_of(rows[0])
        return np.array(steps, dtype="int64"), metadata.unpack(rows, units)

    def _raise_not_found(self, ctx, eid, run, layer):
        runs = {
            r.run_name for r in self._data_provider.list_runs(ctx, experiment_id=eid)
        }
        if run not in runs:
            raise errors.NotFoundError(f"Unknown run: {run!r}.")
        raise errors.NotFoundError(
            f"Run {run!r} has no homeostasis data for layer {layer!r}."
        )


def _latest_width_steps(by_step):
    """The last steps written with the width of the newest one.

    A run folder reused by a model of another width (a layer of the same
    name) holds two widths; the newest model's steps are shown.
    """
    steps = sorted(by_step)
    width = by_step[steps[-1]].shape[0]
    first = len(steps)
    while first > 0 and by_step[steps[first - 1]].shape[0] == width:
        first -= 1
    return steps[first:]


def _static_files():
    """`{name: path}` of the frontend files that may be served."""
    names = os.listdir(STATIC_DIR) if os.path.isdir(STATIC_DIR) else []
    return {
        name: os.path.join(STATIC_DIR, name)
        for name in names
        if _STATIC_NAME.match(name) and os.path.isfile(os.path.join(STATIC_DIR, name))
    }


def _request_context(request):
    return (
        plugin_util.context(request.environ),
        plugin_util.experiment_id(request.environ),
    )


def _parse(series):
    """`{"units", "scaled"}` of a time series, or None when unusable."""
    try:
        return metadata.parse_content(series.plugin_content)
    except ValueError as error:
        logger.warning("Skipping a homeostasis series: %s", error)
        return None


def _required(request, name):
    value = request.args.get(name)
    if not value:
        raise errors.InvalidArgumentError(f"Missing query argument `{name}`.")
    return value


def _int_arg(args, name, default, low, high):
    raw = args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise errors.InvalidArgumentError(
            f"Query argument `{name}` must be an integer in [{low}, {high}]. "
            f"Received: {name}={raw!r}"
        )
    return value
