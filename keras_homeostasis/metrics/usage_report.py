"""`UsageReport`: the load-balancing metrics of a model's layers on a data set."""

import json

from keras_homeostasis.metrics import usage


class UsageReport:
    """Per-layer usage entropy, CV, Gini, dead fraction and sorted activity.

    Build it with `UsageReport.from_model(model, data)`. `layers` maps each
    layer name to a dict of metrics; `activity` maps it to the per-unit mean
    |output| (unsorted, in unit order).

    Example:

    ```python
    report = UsageReport.from_model(model, x_test)
    print(report.to_markdown())
    report.save("usage.json")
    ```
    """

    def __init__(self, activity, positive_counts):
        self.activity = {k: list(map(float, v)) for k, v in activity.items()}
        self.layers = {}
        for name, a in activity.items():
            self.layers[name] = {
                "units": len(a),
                "usage_entropy": usage.usage_entropy(a),
                "cv": usage.coefficient_of_variation(a),
                "gini": usage.gini(a),
                "dead_fraction": usage.dead_fraction(positive_counts[name]),
                "mean_activity": float(sum(a) / max(len(a), 1)),
            }

    @classmethod
    def from_model(cls, model, data, layers=None, batch_size=256, steps=None):
        """Measures `model`'s layers on `data` in inference passes.

        Args:
            model: a Sequential, functional (nested models included) or
                subclassed Keras model.
            data: an array (or list/dict of arrays) of inputs, an `(x, y)`
                tuple or a `tf.data.Dataset` of inputs or `(x, y)` pairs;
                it must hold at least one example.
            layers: names of the layers to measure; by default every
                Dense/Conv layer except the output layers.
            batch_size: batch size for arrays.
            steps: at most this many batches (None: all of `data`).

        Each unit is measured on its real output: a layer without activation
        followed by a parameter-free activation layer (`ReLU()`,
        `Activation("relu")`, `LeakyReLU`, ...; `Dropout` in between is
        skipped) is measured after that activation. That activation is read
        from the graph of Sequential and functional models; a subclassed
        model has none to read, so there each layer's own output is measured.
        """
        stats = usage.layer_statistics(model, data, layers, batch_size, steps)
        return cls(
            {k: v[0] for k, v in stats.items()}, {k: v[1] for k, v in stats.items()}
        )

    def sorted_activity(self, layer):
        """Per-unit activities of `layer`, most used first."""
        return usage.sorted_activity(self.activity[layer])

    def to_dict(self):
        return {"layers": self.layers, "activity": self.activity}

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=1)

    def to_markdown(self):
        rows = [
            "| layer | units | usage entropy | CV | Gini | dead fraction |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, m in self.layers.items():
            rows.append(
                f"| {name} | {m['units']} | {m['usage_entropy']:.4f} | "
                f"{m['cv']:.3f} | {m['gini']:.3f} | {m['dead_fraction']:.3f} |"
            )
        return "\n".join(rows)

    def plot(self, path):
        """Saves the sorted per-unit activity curves of every layer as an image."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as e:
            raise ImportError(
                "UsageReport.plot needs matplotlib: pip install matplotlib"
            ) from e
        fig, ax = plt.subplots(figsize=(6, 4))
        for name in self.layers:
            curve = self.sorted_activity(name)
            ax.plot(
                [i / max(len(curve) - 1, 1) for i in range(len(curve))],
                curve,
                label=name,
            )
        ax.set_xlabel("unit rank (0 = most used)")
        ax.set_ylabel("mean |activity|")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def __repr__(self):
        return f"UsageReport({json.dumps(self.layers)})"
