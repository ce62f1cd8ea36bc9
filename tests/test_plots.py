"""Figures render from synthetic data (no broker)."""
import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from helpers.measure import plots, timing  # noqa: E402


def _events():
    out = []
    for i, (worker, start, end) in enumerate([("w1", 0, 1), ("w2", 0, 0.2), ("w2", 0.2, None)]):
        key = f"{worker}:{i}"
        out.append({"event": "delivered", "worker": worker, "delivery": key, "task": f"t{i}",
                    "redelivered": i == 2, "t": start})
        out.append({"event": "started", "worker": worker, "delivery": key, "task": f"t{i}",
                    "t": start})
        if end is not None:
            out.append({"event": "finished", "worker": worker, "delivery": key,
                        "task": f"t{i}", "t": end})
    return out


def test_timeline_load_and_depth_draw(tmp_path):
    df = timing.deliveries(_events(), t0=0.0)
    df["duration"] = [1.0, 0.2, 0.2]
    ax = plots.timeline(df)
    assert len(ax.patches) == 3  # one bar per started delivery, the cut one included
    summary = timing.summarize(_events(), ["t0", "t1", "t2"], ["t0", "t1", "t2"],
                               {"t0": 1.0, "t1": 0.2, "t2": 0.2}, ["w1", "w2"], 0.0)
    ax = plots.load(pd.DataFrame(summary["per_worker"]))
    assert len(ax.patches) == 2
    samples = pd.DataFrame({"t_s": [0, 1], "messages_ready": [5, 0],
                            "messages_unacknowledged": [1, 0]})
    ax = plots.queue_depth(samples)
    ax.figure.savefig(tmp_path / "depth.png")
    assert (tmp_path / "depth.png").stat().st_size > 1000
