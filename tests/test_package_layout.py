"""The package's plan: the library apart from the lab, no import cycles.

The library is `keras_homeostasis` and its subpackages except
`keras_homeostasis.lab`, the command-line experiment runner. The lab uses the
library, never the reverse; no two package modules import each other, even
through a chain or inside a function; `import keras_homeostasis` stays
light (no YAML, keras-tuner or TensorBoard server code); and the library needs
none of the lab's own dependencies (the `lab` extra).
"""

import ast
import pathlib
import subprocess
import sys

PACKAGE = "keras_homeostasis"
ROOT = pathlib.Path(__file__).resolve().parents[1] / PACKAGE
LAB = f"{PACKAGE}.lab"
# Third-party modules of the `lab` extra, which the library must not need.
LAB_ONLY = ("yaml", "sklearn", "matplotlib", "tensorflow_datasets")
# Library modules allowed one of them as an optional import with its own
# install hint: `UsageReport.plot` draws with matplotlib.
OPTIONAL_IN_LIBRARY = {f"{PACKAGE}.metrics.usage_report": {"matplotlib"}}
# Not imported by `import keras_homeostasis`: optional or heavy dependencies
# and the TensorBoard plugin's server side.
NOT_ON_IMPORT = LAB_ONLY + (
    "keras_tuner",
    "werkzeug",
    f"{PACKAGE}.tensorboard.homeostasis_plugin",
    f"{PACKAGE}.tensorboard.homeostasis_loader",
    LAB,
)


def module_files():
    """`{dotted module name: path}` of every module of the package."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def third_party_roots(path):
    """Top-level names of every absolute import in a module, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def imported_modules(name, path, modules):
    """Package modules that module `name` imports anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph():
    modules = module_files()
    return {
        name: imported_modules(name, path, modules) for name, path in modules.items()
    }


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_lab(name):
    return name == LAB or name.startswith(LAB + ".")


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert f"{PACKAGE}.rule" in graph[f"{PACKAGE}.engine"]
    assert f"{LAB}.train" in graph[f"{LAB}.cli"]  # imported inside a function
    assert f"{LAB}.cli" in graph


def test_no_import_cycle_between_package_modules():
    assert cycles(import_graph()) == []


def test_the_library_never_imports_the_lab():
    graph = import_graph()
    offenders = {
        name: sorted(m for m in imported if is_lab(m))
        for name, imported in graph.items()
        if not is_lab(name)
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_library_imports_none_of_the_lab_dependencies():
    offenders = {}
    for name, path in module_files().items():
        allowed = OPTIONAL_IN_LIBRARY.get(name, set())
        found = third_party_roots(path) & set(LAB_ONLY) - allowed
        if not is_lab(name) and found:
            offenders[name] = sorted(found)
    assert offenders == {}
    lab = third_party_roots(ROOT / "lab" / "config.py")
    assert "yaml" in lab  # the scan sees function-level imports


def test_importing_the_package_stays_light():
    # Keras itself imports some of them when they are installed: only what
    # the package adds counts.
    code = (
        "import sys, keras, tensorflow\n"
        "before = set(sys.modules)\n"
        "import keras_homeostasis\n"
        f"print([m for m in {NOT_ON_IMPORT!r} if m in set(sys.modules) - before])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        timeout=300,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_subpackages_are_attributes_of_the_package_imported_on_first_use():
    code = (
        "import sys, keras_homeostasis as kh\n"
        "before = 'keras_homeostasis.tuning' in sys.modules\n"
        "print(before, kh.tuning.SCORE_KEY, 'keras_tuner' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,
        timeout=300,
        check=True,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last == "False val_homeostasis_score False"
