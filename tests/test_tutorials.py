"""The tutorials run end to end (small setting) and their notebooks are current."""

import os
import pathlib
import subprocess
import sys

import pytest
from homeostasis_testing import load_script

# keras.backend.clear_session() collects garbage at every run.
pytestmark = pytest.mark.usefixtures("own_heap")

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"


render = load_script(TUTORIALS / "render.py")
SCRIPTS = render.scripts(TUTORIALS)
# What each tutorial must print when it ran to the end.
EXPECTED = {
    "synaptic_scaling_quickstart.py": [
        "With scaling:",
        "Rule alone:",
        "restored test accuracy",
    ],
    "tuning_target_activity.py": ["test accuracy", "| hidden_1 |"],
    "monitoring_in_tensorboard.py": ["replicas: 2", "mirrored   hidden_2"],
    "continual_learning.py": ["task 2: online accuracy", "| scaling | 3 |"],
}


def test_the_four_tutorials_exist():
    assert {p.name for p in SCRIPTS} == set(EXPECTED)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_notebook_is_up_to_date(script):
    notebook = render.notebook_path(script)
    assert notebook.exists(), f"run python tutorials/render.py ({notebook.name})"
    assert notebook.read_text(encoding="utf-8") == render.render(script), (
        f"{notebook.name} is stale: run python tutorials/render.py"
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_keras_io_header_and_interleaved_prose(script):
    blocks = render.split_blocks(script.read_text(encoding="utf-8"))
    header = blocks[0][1]
    for key in ("Title:", "Author:", "Description:"):
        assert key in header
    kinds = [kind for kind, _ in blocks]
    assert kinds.count("markdown") >= 5 and kinds.count("code") >= 4


def test_render_splits_prose_and_code():
    source = (
        '"""\nTitle: T\nAuthor: A\nDescription: D\n"""\nx = 1\n"""\n## Prose\n"""\n'
    )
    source += "y = 2\n# ruff: noqa: E402\n"
    blocks = render.split_blocks(source)
    assert [kind for kind, _ in blocks] == ["markdown", "code", "markdown", "code"]
    assert blocks[3][1] == "y = 2"
    notebook = render.to_notebook(source)
    assert notebook.cells[0].source.startswith("# T")
    assert [c.id for c in notebook.cells] == ["cell-0", "cell-1", "cell-2", "cell-3"]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_tutorial_runs_end_to_end(script, tmp_path):
    env = {
        **os.environ,
        "KH_TUTORIAL_SMALL": "1",
        "KH_TUTORIAL_OUT": str(tmp_path / "out"),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for text in EXPECTED[script.name]:
        assert text in done.stdout, done.stdout[-3000:]
