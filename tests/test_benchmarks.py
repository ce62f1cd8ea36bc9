"""The benchmark harness on a tiny size, so that ``make bench`` cannot rot.

It checks that every peer ran every workload to completion and that the table, the JSON
and the plot come out; it asserts nothing about speed (figures are not tests).
"""
import json
import math

import pytest

from benchmarks import bench, peers

pytestmark = pytest.mark.broker


def test_quick_benchmark_runs_every_peer_to_completion(broker, tmp_path, capsys):
    out = bench.main(["--quick", "--repeats", "1", "--quiet", "--json",
                      str(tmp_path / "bench.json"), "--plot", str(tmp_path / "bench.png")])
    expected = ["project", "tutorial"] + (["celery"] if peers.celery_available() else [])
    for workload, by_peer in out["runs"].items():
        assert sorted(by_peer) == sorted(expected), workload
        for peer, rows in by_peer.items():
            assert rows and all(r["complete"] for r in rows), (workload, peer, rows)
            assert all(r["tasks_completed"] == r["tasks"] for r in rows), (workload, peer)
            assert all(math.isfinite(r["makespan_s"]) and r["makespan_s"] > 0 for r in rows)
    assert {r["confirms"] for r in out["publishing"].values()} == set(
        bench.publish_confirms.MODES)
    assert all(r["queued"] == r["tasks"] for r in out["publishing"].values())
    assert {(r["workers"], r["kind"]) for r in out["scaling"]} == {
        (1, "sleep"), (1, "cpu"), (2, "sleep"), (2, "cpu")}
    assert all(r["completed"] == r["tasks"] for r in out["scaling"])
    printed = capsys.readouterr().out
    assert "makespan/ideal" in printed and "project / tutorial" in printed
    assert json.loads((tmp_path / "bench.json").read_text())["table"] == out["table"]
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert not list(peers._LIVE), "a peer worker outlived the benchmark"
