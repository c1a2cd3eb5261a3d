"""Runs documentation snippets, each in a fresh namespace after the prelude.

    python docs_snippet_runner.py SNIPPETS.json RESULTS.json

SNIPPETS.json is a list of `[name, code]`; RESULTS.json maps each name to
None (it ran) or the error's traceback. Each snippet gets TIME_LIMIT
seconds and a cleared Keras session, so layer names start afresh.
"""

import json
import pathlib
import signal
import sys
import traceback

TIME_LIMIT = 90
PRELUDE = pathlib.Path(__file__).with_name("docs_prelude.py").read_text()


def _timeout(signum, frame):
    raise TimeoutError(f"the snippet ran over {TIME_LIMIT} s")


def run(name, code):
    import keras

    keras.backend.clear_session()
    namespace = {"__name__": "__main__"}
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(TIME_LIMIT)
    try:
        exec(compile(PRELUDE, "docs_prelude.py", "exec"), namespace)
        exec(compile(code, name, "exec"), namespace)
    except BaseException:
        return traceback.format_exc(limit=-8)
    finally:
        signal.alarm(0)
    return None


def main(snippets_path, results_path):
    snippets = json.loads(pathlib.Path(snippets_path).read_text())
    results = {name: run(name, code) for name, code in snippets}
    pathlib.Path(results_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
