"""bench: interleaved rounds, rows and ratios, static-batch skips, machine facts, the CLI in both modes, and the
runner options it relies on (ORT idle-thread policy, the torch.compile backend entry)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from gtpt_deploy.cli import main
from gtpt_deploy.errors import ArtifactError, GtptError
from gtpt_deploy.eval import bench_worker
from gtpt_deploy.eval.bench import bench, bench_entries, tile_crops
from gtpt_deploy.eval.machine import cpu_model_and_flags
from gtpt_deploy.runners import backends_for, create_runner
from gtpt_fixtures import PEOPLE, write_fake_pose_onnx


@pytest.fixture(scope="module")
def fake_b2(tmp_path_factory):
    return write_fake_pose_onnx(tmp_path_factory.mktemp("fake") / "fake_b2.onnx", batch=2)


class _InProcessWorker:
    """The worker protocol of eval/bench_worker.py in this process, recording every call (path, batch)."""

    def __init__(self, entry, threads, calls):
        self.runner, self.path, self.calls = create_runner(entry.artifact, threads=threads), entry.artifact, calls

    def open(self):
        from gtpt_deploy.eval.bench_worker import Opened

        self.runner.activate()
        return Opened(self.runner.description, tuple(self.runner.meta.input_size), self.runner.static_batch, 0.0,
                      os.getpid())

    def set_batch(self, x):
        self.x = x

    def infer(self, n=1):
        for _ in range(n):
            self.calls.append((self.path, len(self.x)))
            self.runner.infer(self.x)
        return self.runner.times[-n:]

    def close(self):
        self.runner.deactivate()


def test_rounds_are_interleaved_and_rows_complete(fake_dyn, fake_b2, monkeypatch):
    calls = []
    monkeypatch.setattr(bench_worker, "start_worker", lambda entry, threads: _InProcessWorker(entry, threads, calls))
    report = bench([fake_dyn, fake_b2], batches=(2, 3), rounds=4, warmup=1)
    timed_b2 = [c for c in calls if c[1] == 2][2:]  # after one warm-up call each
    assert timed_b2 == [(str(fake_dyn), 2), (str(fake_b2), 2)] * 4  # A B A B ...
    rows = {(r.label, r.batch): r for r in report.rows}
    assert [(r.label, r.batch) for r in report.rows] == [("fake_dyn.onnx", 2), ("fake_dyn.onnx", 3),
                                                           ("fake_b2.onnx", 2), ("fake_b2.onnx", 3)]
    assert rows["fake_b2.onnx", 3].skipped == "static batch 2" and rows["fake_b2.onnx", 3].median_ms is None
    first, other = rows["fake_dyn.onnx", 2], rows["fake_b2.onnx", 2]
    assert first.vs_first == 1.0 and first.runs == 4
    assert other.vs_first == pytest.approx(first.median_ms / other.median_ms)
    assert first.min_ms <= first.median_ms <= first.p90_ms
    assert first.ms_per_crop == pytest.approx(first.median_ms / 2)
    assert report.crops["count"] >= 8 and "onnxruntime" in first.runner
    text = "\n".join(report.format_lines())
    assert "load average" in text and "skipped: static batch 2" in text
    json.dumps(report.to_dict())  # JSON-ready


def test_each_artifact_runs_alone_in_its_own_worker_process(fake_dyn, tmp_path):
    """No backend shares a process with another or with the caller (torch.compile slowed ONNX Runtime by a third
    in one process); the header says so; a worker's failure is the artifact's one-line error."""
    other = write_fake_pose_onnx(tmp_path / "other.onnx", batch=None)
    report = bench([fake_dyn, other], batches=(1,), rounds=2, warmup=1)
    pids = [r.pid for r in report.rows]
    assert None not in pids and len(set(pids)) == 2 and os.getpid() not in pids
    assert all(r.runs == 2 and r.median_ms > 0 for r in report.rows)
    assert any(line.startswith("isolation: each artifact in its own worker process")
               for line in report.format_lines())
    plain = write_fake_pose_onnx(tmp_path / "plain.onnx", meta=False)
    with pytest.raises(GtptError, match="no gtpt-deploy metadata"):
        bench([fake_dyn, plain], batches=(1,), rounds=1, warmup=0)


def test_tile_crops_repeats_in_order():
    crops = np.arange(3, dtype=np.float32).reshape(3, 1, 1, 1)
    assert tile_crops(crops, 7).ravel().tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert tile_crops(crops, 2).ravel().tolist() == [0, 1]


def test_entries_add_torch_compile_for_checkpoints_only(tmp_path):
    entries = bench_entries(["a.pth", "b.onnx"], torch_compile=True, device=["cpu", "cpu"])
    assert [(e.artifact, e.backend) for e in entries] == [("a.pth", None), ("a.pth", "torch.compile"),
                                                           ("b.onnx", None)]
    assert backends_for("x.pth") == ["torch", "torch.compile"] and backends_for("x.onnx") == ["onnxruntime", "openvino"]
    with pytest.raises(GtptError, match="one per artifact"):
        bench_entries(["a.onnx", "b.onnx", "c.onnx"], device=["cpu", "cpu"])
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    with pytest.raises(ArtifactError, match="cannot run m.onnx"):
        create_runner(onnx, backend="torch.compile")


def test_cpu_flags_from_cpuinfo():
    text = "processor\t: 0\nmodel name\t: Some CPU @ 2GHz\nflags\t\t: fpu avx2 fma avx512f avx512_vnni sse\n"
    assert cpu_model_and_flags(text) == ("Some CPU @ 2GHz", ["avx2", "fma", "avx512f", "avx512_vnni"])


@pytest.mark.parametrize("policy, spinning, expected", [("PASSIVE", None, "0"), ("ACTIVE", None, "1"),
                                                        ("PASSIVE", True, "1")])
def test_ort_sessions_follow_the_idle_thread_policy(fake_dyn, monkeypatch, policy, spinning, expected):
    monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    with create_runner(fake_dyn, spinning=spinning) as r:
        entry = r._session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    assert entry == expected


def test_cli_json_and_pipeline_mode(fake_dyn):
    r = CliRunner().invoke(main, ["bench", str(fake_dyn), "--batch", "1,4", "--rounds", "2", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [row["batch"] for row in data["rows"]] == [1, 4] and "flags" in data["machine"]
    assert data["machine"]["omp_wait_policy"] and isinstance(data["machine"]["ort_spinning"], bool)
    r = CliRunner().invoke(main, ["bench", str(fake_dyn), "--images", str(PEOPLE / "bus.jpg"), "--rounds", "1",
                                  "--json"])
    assert r.exit_code == 0, r.output
    pipe = json.loads(r.stdout)
    assert pipe["images"] == 1 and pipe["persons"] == 1 and pipe["box_source"] == "WholeImageBoxes"
    assert 0 <= pipe["pose_idle_share"] <= 1 and pipe["pose_calls"] == 1  # one crop + its flipped copy, one call
    r = CliRunner().invoke(main, ["bench", str(fake_dyn), "--no-flip"])
    assert r.exit_code == 2 and "pipeline mode" in r.output


def test_concurrency_mode_reports_each_level(fake_dyn):
    """bench --concurrency: one row per client count, every request counted, latencies ordered p50 <= p90."""
    import json

    from click.testing import CliRunner

    from gtpt_deploy.cli import main

    r = CliRunner().invoke(main, ["bench", str(fake_dyn), "--concurrency", "1,2", "--batch", "2", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    assert [x["clients"] for x in rows] == [1, 2] and all(x["requests"] == 48 and x["batch"] == 2 for x in rows)
    assert all(0 < x["p50_ms"] <= x["p90_ms"] and x["crops_per_s"] > 0 for x in rows)
    bad = CliRunner().invoke(main, ["bench", str(fake_dyn), str(fake_dyn), "--concurrency", "1"])
    assert bad.exit_code == 2 and "one ARTIFACT" in bad.stderr


def test_torch_compile_warm_up_says_it_compiles_and_quiet_bench_prints_no_steps(fake_dyn, monkeypatch):
    """torch.compile's first call compiles for a minute or two: bench says so before it instead of going silent,
    and -q leaves only the result on the streams (issue 19)."""
    from gtpt_deploy.eval.bench import BenchEntry, _time_all
    from gtpt_deploy.eval.bench_worker import Opened

    events = []

    class Worker:
        def set_batch(self, x):
            pass

        def infer(self, n=1):
            events.append("call")
            return [0.001] * n

    info = Opened(description="torch.compile", input_size=(256, 192), static_batch=None, load_s=0.0, pid=0)
    opened = [(BenchEntry("m.pth", "torch.compile"), Worker(), info), (BenchEntry("m.pth"), Worker(), info)]
    _time_all(opened, {(256, 192): np.zeros((2, 3, 256, 192), np.float32)}, [2], 1, 0, events.append)
    compile_lines = [i for i, e in enumerate(events) if "compiles on this first call" in e]
    assert len(compile_lines) == 1 and "m.pth [torch.compile]" in events[compile_lines[0]]
    assert events[compile_lines[0] + 1] == "call"          # said just before the (compiling) first call
    quiet = CliRunner().invoke(main, ["bench", str(fake_dyn), "--batch", "1", "--rounds", "1", "-q"])
    loud = CliRunner().invoke(main, ["bench", str(fake_dyn), "--batch", "1", "--rounds", "1"])
    assert quiet.exit_code == 0 == loud.exit_code, quiet.output + loud.output
    assert "warming up" in loud.stderr and "warming up" not in quiet.stderr and "median" in quiet.stdout.lower()
