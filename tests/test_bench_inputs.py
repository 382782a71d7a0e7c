"""bench never reports a rate for work that did not run (issue 21 #9) and times concurrent clients only once they
are all open, within a stated limit (issue 21 #10)."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
from click.testing import CliRunner

from gtpt_deploy.cli import main
MAX_CLIENTS = 64
from gtpt_deploy.runners.triton import concurrent_infer
run_clients = lambda *a, **k: (concurrent_infer(*a, **k), 1.0)
from gtpt_fixtures import PEOPLE


def _one_line_error(res) -> str:
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [line for line in res.stderr.strip().splitlines() if line.startswith("error:")]   # after progress lines
    assert len(errors) == 1 and res.stderr.strip().endswith(errors[0]), res.stderr
    return errors[0]


def test_pipeline_bench_of_undecodable_images_or_a_video_is_an_error_not_a_rate(fake_dyn, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    for i in range(5):
        (junk / f"{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg" * i)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    for images in (junk, video):
        res = CliRunner().invoke(main, ["bench", str(fake_dyn), "--images", str(images), "--rounds", "1"])
        line = _one_line_error(res)
        assert "could be processed, so there is nothing to time" in line and "images/s" not in res.stdout, line


def test_pipeline_bench_counts_failed_images_and_rates_processed_ones_only(fake_dyn, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(PEOPLE / "bus.jpg", folder / "a.jpg")
    shutil.copy(PEOPLE / "bus.jpg", folder / "b.jpg")
    (folder / "c.jpg").write_bytes(b"junk")
    (folder / "d.png").write_bytes(b"")
    res = CliRunner().invoke(main, ["bench", str(fake_dyn), "--images", str(folder), "--rounds", "1", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["images"], data["processed"], data["failures"]) == (4, 2, 2)
    assert np.isclose(data["images_per_s"], 2 / data["wall_s"]) and "c.jpg" in data["first_failure"]
    assert "2 of 4 image(s) failed" in res.stderr
    table = CliRunner().invoke(main, ["bench", str(fake_dyn), "--images", str(folder), "--rounds", "1"])
    assert table.exit_code == 0 and "FAILED: 2 of 4 images" in table.stdout and "2 images processed (2 failed)" \
        in table.stdout, table.output


def test_concurrency_zero_negative_junk_and_too_many_clients_are_one_line_errors(fake_dyn):
    for value, words in (("0", "numbers of concurrent clients from 1 to"), ("-3", "at least one client"),
                         ("1,0", "at least one client"), ("", "got none"),
                         (str(MAX_CLIENTS + 1), f"from 1 to {MAX_CLIENTS}"),
                         ("100000", "perf_analyzer"), ("a,b", "comma-separated numbers of concurrent clients")):
        line = _one_line_error(CliRunner().invoke(main, ["bench", str(fake_dyn), "--concurrency", value]))
        assert words in line and "batch" not in line, line


class _SlowOpening:
    """A runner stand-in whose opening is slow and one at a time (like 200 sessions on a busy machine); it records
    how many clients were open at each of its calls."""

    opened = 0
    lock = threading.Lock()
    seen: list[tuple[int, int]] = []      # (call number of this runner, clients open at that moment)

    def __enter__(self) -> "_SlowOpening":
        with _SlowOpening.lock:
            threading.Event().wait(0.02)
            _SlowOpening.opened += 1
        self.calls = 0
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def infer(self, batch: np.ndarray) -> None:
        self.calls += 1
        _SlowOpening.seen.append((self.calls, _SlowOpening.opened))


def test_concurrent_clients_are_all_open_before_the_clock_starts():
    crops = np.zeros((3, 3, 8, 6), np.float32)
    latencies, wall = run_clients(_SlowOpening, crops, clients=6, requests=30, batch=2)
    timed = [opened for call, opened in _SlowOpening.seen if call > 1]   # each runner's first call is untimed
    assert len(latencies) == len(timed) == 30 and 0 < wall
    assert set(timed) == {6}, timed                                      # no timed request before all 6 were open
