"""Every ```python block of README.md and docs/*.md runs.

Each block runs in a fresh namespace, in an empty folder, after
`tests/docs_prelude.py` (small data and a small `model` for the names the
snippets take as given), under a time limit (`tests/docs_snippet_runner.py`:
one process per file; a block that sets up a tf.distribute strategy gets a
process of its own). A block that cannot run here
(it needs the network, a cluster or a long run) is marked on the line just
before its fence with `<!-- snippet: skip (the reason) -->`.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNNER = pathlib.Path(__file__).with_name("docs_snippet_runner.py")
RUNNER_LIMIT = 90  # seconds per snippet, as in the runner
# docs/api.md is generated from the docstrings (tests/test_api_docs.py).
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS.remove(ROOT / "docs" / "api.md")

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SKIP = re.compile(r"<!--\s*snippet:\s*skip\s*\((.+?)\)\s*-->\s*$")


def snippets():
    """`(id, code, skip reason or None)` of every python block, in order."""
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            skip = SKIP.search(before)
            name = f"{path.relative_to(ROOT)}:{line}"
            found.append((name, match.group(1), skip.group(1) if skip else None))
    return found


SNIPPETS = snippets()


def test_the_docs_have_snippets_and_skips_give_a_reason():
    assert len(SNIPPETS) >= 8
    for path in DOCS:
        for line in path.read_text(encoding="utf-8").splitlines():
            # A marker is a line of its own; prose may quote one.
            if line.lstrip().startswith("<!--") and "snippet:" in line:
                assert SKIP.search(line), f"{path.name}: skip without a reason: {line}"


def _group(name, code):
    # A tf.distribute strategy must be the first thing a process sets up.
    return name if "Strategy(" in code else name.split(":")[0]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Runs the snippets (one process per group); `{name: traceback or None}`."""
    groups = {}
    for name, code, skip in SNIPPETS:
        if not skip:
            groups.setdefault(_group(name, code), []).append([name, code])
    found = {}
    for group in groups.values():
        folder = tmp_path_factory.mktemp("snippets")
        (folder / "snippets.json").write_text(json.dumps(group))
        env = {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
        process = subprocess.run(
            [sys.executable, str(RUNNER), "snippets.json", "results.json"],
            cwd=folder,
            env={**os.environ, **env, "MPLBACKEND": "Agg"},
            capture_output=True,
            text=True,
            timeout=RUNNER_LIMIT * len(group) + 60,
        )
        assert process.returncode == 0, process.stderr[-3000:]
        found.update(json.loads((folder / "results.json").read_text()))
    return found


@pytest.mark.parametrize("name, code, skip", SNIPPETS, ids=[s[0] for s in SNIPPETS])
def test_snippet_runs(results, name, code, skip):
    if skip:
        pytest.skip(skip)
    assert results[name] is None, f"{name} failed:\n{results[name]}"
