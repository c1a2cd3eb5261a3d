"""Every bad path given to `keras-homeostasis` is one line, exit code 2.

The line names the argument (a flag, CONFIG or a config key) and its value;
no traceback, and no work started.
"""

import pathlib

import pytest

from keras_homeostasis.lab import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONTINUAL = ROOT / "configs" / "continual_quick.yaml"

TINY = "data:\n  dataset: digits\nmodel:\n  hidden: [4]\ntraining:\n  epochs: 1\n"


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + f"output:\n  run_dir: {tmp_path / 'default_run'}\n")
    return path


def error_line(capsys, argv):
    """Runs the command line; returns its one error line."""
    assert cli.main([str(a) for a in argv]) == cli.BAD_INPUT
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("keras-homeostasis: error: ")
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize("command", ["train", "compare", "tune", "continual"])
def test_missing_config_file_is_named(tmp_path, capsys, command):
    path = tmp_path / "nope.yaml"
    line = error_line(capsys, [command, path])
    assert f"argument CONFIG: config file not found: '{path}'" in line


def test_config_that_is_a_folder_is_named(tmp_path, capsys):
    line = error_line(capsys, ["train", tmp_path])
    assert f"argument CONFIG: not a file: '{tmp_path}'" in line


def test_config_that_is_not_text_is_named(tmp_path, capsys):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81 not text")
    line = error_line(capsys, ["compare", path])
    assert f"argument CONFIG: cannot read the config file '{path}'" in line


def test_config_that_is_not_yaml_is_one_line(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("data: [\n")
    line = error_line(capsys, ["train", path])
    assert f"argument CONFIG: Could not parse '{path}' as YAML" in line
    assert "line 2" in line


def test_compare_without_a_compare_section_fails_before_writing(tmp_path, tiny, capsys):
    line = error_line(capsys, ["compare", tiny, "--seeds", "0"])
    assert f"argument CONFIG: '{tiny}' has no `compare:` section" in line
    assert not (tmp_path / "default_run").exists()


@pytest.mark.parametrize(
    "command, flag", [("train", "--run-dir"), ("tune", "--out")], ids=str
)
def test_output_folder_that_is_a_file_is_named(tmp_path, tiny, capsys, command, flag):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    line = error_line(capsys, [command, tiny, flag, a_file])
    assert f"argument {flag}: not a folder: '{a_file}'" in line


def test_compare_out_under_a_file_is_named(tmp_path, capsys):
    path = tmp_path / "cmp.yaml"
    path.write_text(TINY + "compare:\n  seeds: [0]\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    line = error_line(capsys, ["compare", path, "--out", a_file / "results"])
    want = f"argument --out: cannot create the folder '{a_file / 'results'}'"
    assert want in line and f"'{a_file}' is a file" in line


def test_default_run_dir_is_named_by_its_config_key(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + f"output:\n  run_dir: {a_file}\n")
    line = error_line(capsys, ["train", path])
    assert f"argument output.run_dir: not a folder: '{a_file}'" in line


def test_bench_and_continual_out_that_is_a_file_are_named(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    line = error_line(capsys, ["bench", "--quick", "--out", a_file])
    assert f"argument --out: not a folder: '{a_file}'" in line
    line = error_line(capsys, ["continual", CONTINUAL, "--out", a_file])
    assert f"argument --out: not a folder: '{a_file}'" in line


def test_missing_data_file_is_named_by_its_config_key(tmp_path, capsys):
    path = tmp_path / "nodata.yaml"
    path.write_text(f"data:\n  dataset: {tmp_path / 'none.npz'}\n")
    line = error_line(capsys, ["train", path, "--run-dir", tmp_path / "run"])
    assert f"`data.dataset`: Data set file not found: '{tmp_path / 'none.npz'}'" in line
