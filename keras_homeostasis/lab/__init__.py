"""The lab: the `keras-homeostasis` experiment runner, apart from the library.

A YAML config (`config`) names a data set (`data`) and a model (`models`);
one job per command runs it and writes its results beside a report module:

- `train`: one model, one run folder (`multi_worker` for `--workers N` and
  `TF_CONFIG` clusters);
- `compare` + `compare_report`: every normalization over optimizers and seeds;
- `tune` + `tune_report`: a keras-tuner search of the scaling settings;
- `bench` + `bench_report`: the step time of each variant.

`cli` parses the command line and calls the job. The lab uses the library
(`keras_homeostasis` and its subpackages); the library never imports the lab,
and `import keras_homeostasis` does not import it.
"""
