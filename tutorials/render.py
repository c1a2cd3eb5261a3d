"""Renders each tutorial script into a notebook beside it (outputs empty).

    python tutorials/render.py          # rewrite every tutorials/*.ipynb
    python tutorials/render.py --check  # exit 1 when a notebook is stale

The scripts follow keras.io's example format: a header docstring with
`Title:`, `Author:`, `Date created:`, `Last modified:` and `Description:`,
then prose in top-level triple-quoted strings interleaved with code. Each
prose block becomes a Markdown cell, each stretch of code between them a
code cell (as keras-io's `tutobooks` does). Lines starting with `# ruff:`
are left out. Cell ids are numbered, so rendering is deterministic and the
tests can check that the notebooks match their scripts.
"""

import argparse
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
HEADER_KEYS = ("Title", "Author", "Date created", "Last modified", "Description")
QUOTES = '"""'
# Not tutorials: this renderer and the setup the tutorials share.
HELPERS = ("render.py", "tutorial_setup.py")


def scripts(folder=HERE):
    """The tutorial scripts of `folder` (every .py file but the helpers)."""
    return sorted(p for p in folder.glob("*.py") if p.name not in HELPERS)


def split_blocks(source):
    """`[(kind, text)]` with kind "markdown" or "code", in order."""
    blocks, code, prose = [], [], None
    for line in source.splitlines():
        if line.startswith("# ruff:"):
            continue
        if prose is not None:
            if line.rstrip().endswith(QUOTES):
                prose.append(line.rstrip()[: -len(QUOTES)])
                blocks.append(("markdown", "\n".join(prose)))
                prose = None
            else:
                prose.append(line)
            continue
        if line.startswith(QUOTES):
            blocks.append(("code", "\n".join(code)))
            code = []
            rest = line[len(QUOTES) :]
            if rest.rstrip().endswith(QUOTES) and rest.strip() != "":
                blocks.append(("markdown", rest.rstrip()[: -len(QUOTES)]))
            else:
                prose = [rest]
            continue
        code.append(line)
    if prose is not None:
        raise ValueError("Unterminated prose block (missing closing triple quotes).")
    blocks.append(("code", "\n".join(code)))
    return [(kind, text.strip("\n")) for kind, text in blocks if text.strip()]


def header_markdown(text):
    """The header docstring as the notebook's title cell."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in HEADER_KEYS:
            fields[key.strip()] = value.strip()
    missing = [k for k in ("Title", "Author", "Description") if k not in fields]
    if missing:
        raise ValueError(f"The header docstring lacks {missing}.")
    lines = [f"# {fields['Title']}", ""]
    details = [f"**{k}:** {fields[k]}" for k in HEADER_KEYS[1:] if k in fields]
    lines.append("<br>\n".join(details))
    return "\n".join(lines)


def to_notebook(source):
    """The notebook of one tutorial script (an `nbformat` node)."""
    import nbformat

    blocks = split_blocks(source)
    if not blocks or blocks[0][0] != "markdown":
        raise ValueError("A tutorial starts with its header docstring.")
    cells = []
    for index, (kind, text) in enumerate(blocks):
        if index == 0:
            text = header_markdown(text)
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
        cell["id"] = f"cell-{index}"
        cells.append(cell)
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata = {
        "kernelspec": {
            "display_name": "Python 3",
            "language": "python",
            "name": "python3",
        },
        "language_info": {"name": "python"},
    }
    return notebook


def render(script):
    """The notebook text of `script` (what `<script>.ipynb` must contain)."""
    import nbformat

    notebook = to_notebook(pathlib.Path(script).read_text(encoding="utf-8"))
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def notebook_path(script):
    return pathlib.Path(script).with_suffix(".ipynb")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="report stale notebooks, write nothing"
    )
    args = parser.parse_args(argv)
    stale = []
    for script in scripts():
        text = render(script)
        path = notebook_path(script)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"Stale notebooks: {stale}; run python tutorials/render.py")
        return 1
    print(("Stale: " if args.check else "Rendered: ") + (", ".join(stale) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
