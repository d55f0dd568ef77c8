"""The order in which test files reach xdist's workers (tests/schedule.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tests.schedule import costliest_files_first, load_file_seconds, seconds_from_junit

ROOT = Path(__file__).parent.parent


def test_the_costliest_files_come_first_each_file_whole_and_in_its_order():
    ids = ["a.py::x[1]", "b.py::y", "c.py::z", "a.py::x[2]", "d.py::w", "b.py::v"]
    items = [SimpleNamespace(nodeid=i) for i in ids]
    costliest_files_first(items, {"b.py": 30.0, "d.py": 5.0})
    assert [i.nodeid for i in items] == ["b.py::y", "b.py::v", "d.py::w", "a.py::x[1]", "a.py::x[2]", "c.py::z"]


def test_seconds_per_file_from_a_junit_report():
    xml = """<testsuites><testsuite>
      <testcase classname="tests.cluster.test_netns" name="t" time="40.5"/>
      <testcase classname="tests.node.test_x.TestThing" name="a" time="1.5"/>
      <testcase classname="tests.node.test_x" name="b" time="1.0"/>
      <testcase classname="tests.tss.test_cheap" name="c" time="0.3"/>
    </testsuite></testsuites>"""
    assert seconds_from_junit(xml) == {"tests/cluster/test_netns.py": 40.5, "tests/node/test_x.py": 2.5}


def test_the_table_names_test_files_that_exist():
    seconds = load_file_seconds()
    assert seconds and all((ROOT / f).is_file() and s > 0 for f, s in seconds.items())
