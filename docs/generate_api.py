"""Writes docs/api.md, the API reference, from the public docstrings.

    python docs/generate_api.py          # rewrite docs/api.md
    python docs/generate_api.py --check  # exit 1 when docs/api.md is stale

Each section is one public module: the names of its `__all__`, or, for a
module without one, the functions and classes it defines that do not start
with an underscore. A class shows its constructor and the public methods and
properties it adds to its Keras base class (overridden Keras hooks such as
`call` or `on_train_begin` are Keras' documented API, not repeated here). The
output depends only on the code, so the test can regenerate it and compare.
"""

import importlib
import inspect
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "api.md"
COMMAND = "python docs/generate_api.py"
MODULES = (
    "keras_homeostasis",
    "keras_homeostasis.layers",
    "keras_homeostasis.metrics",
    "keras_homeostasis.tensorboard",
    "keras_homeostasis.tensorboard.summary",
    "keras_homeostasis.tuning",
    "keras_homeostasis.distribute_compat",
    "keras_homeostasis.rule",
)
HEADER = f"""# API reference

Generated from the docstrings by `{COMMAND}`; do not edit by hand
(`tests/test_api_docs.py` fails when this file is stale). The README shows
how the pieces fit together; this page lists every public name.
"""


def public_names(module):
    """The documented names of a module, in a stable order."""
    if hasattr(module, "__all__"):
        return sorted(module.__all__)
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == module.__name__
    )


def docstring(value):
    return [inspect.cleandoc(value.__doc__), ""] if value.__doc__ else []


def signature(name, value, method=False):
    """`name(parameters)`, without `self` and without memory addresses."""
    try:
        found = inspect.signature(value)
    except (TypeError, ValueError):
        return name
    if method:
        found = found.replace(parameters=list(found.parameters.values())[1:])
    # A default such as `<function homeostatic_step at 0x7f...>` varies per run.
    return re.sub(r"<(?:function|class) ([\w.]+)[^>]*>", r"\1", f"{name}{found}")


def code(text):
    return f"```python\n{text}\n```"


def is_keras_hook(cls, name):
    """True when `name` overrides a method of a base class outside the package."""
    return any(
        hasattr(base, name)
        for base in cls.__mro__[1:]
        if not base.__module__.startswith("keras_homeostasis")
    )


def members(cls):
    """The public methods and properties a class adds, in source order."""
    for name, value in vars(cls).items():
        if name.startswith("_") or is_keras_hook(cls, name):
            continue
        if isinstance(value, property):
            yield f"{cls.__name__}.{name}", value.fget, True
        elif inspect.isfunction(value) or isinstance(value, classmethod):
            function = value.__func__ if isinstance(value, classmethod) else value
            yield f"{cls.__name__}.{name}", function, False


def render_class(qualified, cls):
    lines = [f"### `{qualified}`", "", code(signature(qualified, cls)), ""]
    lines += docstring(cls)
    for title, function, is_property in members(cls):
        shown = title if is_property else signature(title, function, method=True)
        suffix = " (property)" if is_property else ""
        lines += [f"#### `{title}`{suffix}", "", code(shown), ""]
        lines += docstring(function)
    return lines


def render_name(module, name):
    value = getattr(module, name)
    qualified = f"{module.__name__}.{name}"
    if inspect.ismodule(value):
        return [f"### `{qualified}`", "", f"Module: see `{value.__name__}`.", ""]
    if inspect.isclass(value):
        return render_class(qualified, value)
    if callable(value):
        lines = [f"### `{qualified}`", "", code(signature(qualified, value)), ""]
        return lines + docstring(value)
    if name == "__version__":
        return [f"### `{qualified}`", "", "The package version (a string).", ""]
    return [f"### `{qualified}`", "", code(f"{qualified} = {value!r}"), ""]


def render_module(module_name):
    module = importlib.import_module(module_name)
    lines = [f"## `{module_name}`", ""] + docstring(module)
    for name in public_names(module):
        lines += render_name(module, name)
    return lines


def render():
    """The whole reference, as the text of docs/api.md."""
    lines = [HEADER]
    lines += ["Modules: " + ", ".join(f"`{name}`" for name in MODULES) + ".", ""]
    for module_name in MODULES:
        lines += render_module(module_name)
    return "\n".join(lines).rstrip() + "\n"


def main(argv):
    text = render()
    if "--check" in argv:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is stale: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
