"""The benchmark harness on a tiny size, so that ``make bench`` cannot rot.

It checks that every peer ran every workload to completion and that the table, the JSON
and the plot come out; it asserts nothing about speed (figures are not tests).
"""
import json
import math

import pytest

from benchmarks import bench, peers

pytestmark = [pytest.mark.broker, pytest.mark.tooling]


def test_quick_benchmark_runs_every_peer_to_completion(broker, tmp_path, capsys):
    out = bench.main(["--quick", "--repeats", "1", "--quiet", "--json",
                      str(tmp_path / "bench.json"), "--plot", str(tmp_path / "bench.png")])
    celery = ["celery"] if peers.celery_available() else []
    variants = ["project-p2", "project-reserve"]
    assert sorted(out["runs"]) == ["classic", "quorum"]
    for kind, runs in out["runs"].items():
        base = ["project", "tutorial"] + (celery if kind == "classic" else [])
        for workload, by_peer in runs.items():
            expected = base + (variants if workload != "zero-length" else [])
            assert sorted(by_peer) == sorted(expected), (kind, workload)
            for peer, rows in by_peer.items():
                assert rows and all(r["complete"] for r in rows), (kind, workload, peer, rows)
                assert all(r["tasks_completed"] == r["tasks"] for r in rows), (workload, peer)
                assert all(math.isfinite(r["makespan_s"]) and r["makespan_s"] > 0
                           for r in rows)
    for kind, modes in out["publishing"].items():
        assert set(modes) == set(bench.publish_confirms.MODES), kind
        assert all(r["queued"] == r["tasks"] and r["kind"] == kind
                   for rows in modes.values() for r in rows)
    assert set(out["startup"]) == {1, 2}
    assert all(len(times) == 1 and times[0] > 0 for by_way in out["startup"].values()
               for times in by_way.values())
    assert sorted((r["queue_type"], r["workers"], r["peer"]) for r in out["big"]) == sorted(
        (kind, n, peer) for kind in ("classic", "quorum") for n in (1, 2)
        for peer in bench.BIG_PEERS)
    assert all(r["completed"] == r["tasks"] for r in out["big"])
    assert all(r["frame_rows"] == r["tasks"] for r in out["big"] if r["peer"] == "project")
    assert {(r["workers"], r["kind"]) for r in out["scaling"]} == {
        (1, "sleep"), (1, "cpu"), (2, "sleep"), (2, "cpu")}
    assert all(r["completed"] == r["tasks"] for r in out["scaling"])
    printed = capsys.readouterr().out
    assert "makespan/ideal" in printed and "project/tutorial" in printed
    assert "start-up of 2: project (cold fork server)/tutorial" in printed
    assert "tasks/s on 2, project/tutorial" in printed
    assert json.loads((tmp_path / "bench.json").read_text())["table"] == out["table"]
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert not list(peers._LIVE), "a peer worker outlived the benchmark"
