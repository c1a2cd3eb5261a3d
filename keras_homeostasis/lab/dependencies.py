"""The lab's own third-party dependencies, which the library does not need.

`pip install keras-homeostasis` installs the library only; the
`keras-homeostasis` command line also needs the `lab` extra. `missing()`
names what is absent without importing anything (TensorFlow Datasets and
matplotlib take seconds to import), so the command line can say in one line
how to install it before it fails halfway through a run.
"""

import importlib.util

# Module imported by the lab -> the distribution that provides it.
LAB_MODULES = {
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "matplotlib": "matplotlib",
    "tensorflow_datasets": "tensorflow-datasets",
}
INSTALL = 'pip install "keras-homeostasis[lab]"'


def missing():
    """The distributions of `LAB_MODULES` that cannot be imported, sorted."""
    absent = set()
    for module, distribution in LAB_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            absent.add(distribution)
    return sorted(absent)


def missing_message():
    """One line naming the missing lab dependencies and the fix, or None."""
    absent = missing()
    if not absent:
        return None
    return (
        f"the command line needs {', '.join(absent)} (not installed); "
        f"install them with: {INSTALL}"
    )
