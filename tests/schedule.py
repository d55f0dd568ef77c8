"""The order in which test files are handed to pytest-xdist's workers: the most expensive first.

``make test`` runs ``pytest -n 2 --dist loadfile``: each file goes whole to one worker, in the
order of the collection, and a worker takes the next file when it is almost out of work. By
default xdist first sorts the files by their number of tests, most first, which sent the
one-test files that each run a real cluster for tens of seconds (``test_netns.py``,
``test_load.py``, ...) last, so that one worker ran them alone at the end. ``pyproject.toml``
turns that sort off (``--no-loadscope-reorder``) and ``tests/conftest.py`` puts the files in
the order of their cost in ``tests/data/file-seconds.json`` (longest first; a file not listed
counts 0 and keeps its place among the others): the longest-processing-time-first rule.

The costs only order the files (no test reads or asserts them). Refresh them from a whole
run's JUnit report: ``pytest -n 2 --dist loadfile --junitxml=run.xml`` then
``python -m tests.schedule run.xml > tests/data/file-seconds.json``.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

FILE_SECONDS = Path(__file__).parent / "data" / "file-seconds.json"
LISTED_FROM = 2.0  # files cheaper than this (seconds) are left out of the table


def load_file_seconds(path: Path = FILE_SECONDS) -> dict[str, float]:
    return {k: float(v) for k, v in json.loads(path.read_text())["seconds"].items()}


def file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def costliest_files_first(items: list, seconds: dict[str, float]) -> None:
    """Sort ``items`` in place: whole files, the costliest first; ties (unlisted files) in
    the order of their first test; the tests of one file keep their order."""
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(file_of(item.nodeid), i)
    items.sort(key=lambda item: (-seconds.get(file_of(item.nodeid), 0.0), first[file_of(item.nodeid)]))


def seconds_from_junit(xml_text: str) -> dict[str, float]:
    """Seconds per test file (setup, call and teardown of each of its tests) in a JUnit report."""
    total: Counter[str] = Counter()
    for case in ET.fromstring(xml_text).iter("testcase"):
        parts = case.get("classname", "").split(".")
        module = max((i for i, part in enumerate(parts) if part.startswith("test_")), default=len(parts) - 1)
        total["/".join(parts[:module + 1]) + ".py"] += float(case.get("time", 0))
    return {f: round(s, 1) for f, s in sorted(total.items(), key=lambda kv: -kv[1]) if s >= LISTED_FROM}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.schedule JUNIT.xml > tests/data/file-seconds.json", file=sys.stderr)
        return 2
    table = {"source": f"JUnit report {Path(argv[0]).name} (python -m tests.schedule)",
             "seconds": seconds_from_junit(Path(argv[0]).read_text())}
    print(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
