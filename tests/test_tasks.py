"""Task bodies and workload files (no broker)."""

import pytest

from helpers.core import tasks
from helpers.errors import BadInputError


def test_dotted_body_counts_one_unit_per_dot():
    assert tasks.decode(b"Hello...", unit=0.5) == (None, 1.5, "sleep")
    assert tasks.decode(b"Hello", unit=1.0) == (None, 0.0, "sleep")


def test_json_body_round_trips():
    task = tasks.Task("t7", 0.25, "cpu")
    assert tasks.decode(task.body()) == ("t7", 0.25, "cpu")


@pytest.mark.parametrize("body", [b"{not json", b'{"id": 1}', b'{"duration": -1}',
                                  b'{"duration": 1, "kind": "gpu"}', b"\xff\xfe"])
def test_malformed_bodies_are_rejected(body):
    with pytest.raises(tasks.MalformedTask):
        tasks.decode(body)


def test_odd_tasks_are_heavy():
    work = tasks.odd_heavy(5, 0.2, 0.01)
    assert [t.duration for t in work] == [0.2, 0.01, 0.2, 0.01, 0.2]
    assert len({t.id for t in work}) == 5


@pytest.mark.parametrize("n", [0, -3])
def test_no_tasks_is_an_error(n):
    with pytest.raises(BadInputError, match="at least 1"):
        tasks.odd_heavy(n, 0.1, 0.1)


def test_workload_csv(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("id,duration\na,0.5\nb,1\n")
    assert [(t.id, t.duration) for t in tasks.from_csv(path)] == [("a", 0.5), ("b", 1.0)]


@pytest.mark.parametrize("text, match", [
    ("id,seconds\na,1\n", "no 'duration' column"),
    ("duration\n0.1\n-2\n", "line 3.*>= 0"),
    ("duration\n0.1\nfast\n", "line 3.*not a number"),
    ("duration\n", "no tasks"),
])
def test_bad_workload_names_the_problem(tmp_path, text, match):
    path = tmp_path / "w.csv"
    path.write_text(text)
    with pytest.raises(BadInputError, match=match):
        tasks.from_csv(path)


def test_cpu_work_burns_cpu_time():
    import time
    before = time.thread_time()
    tasks.work(0.05, "cpu")
    assert time.thread_time() - before >= 0.05
