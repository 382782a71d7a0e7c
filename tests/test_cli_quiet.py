"""Issue 19: ``-q`` silenced the log lines but still printed tqdm bars (also on a non-TTY stderr)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gtpt_deploy.cli import main

IMAGE = Path(__file__).resolve().parents[1] / "demo" / "images" / "astronaut.jpg"


def test_quiet_run_prints_no_progress_bar(fake_dyn, tmp_path):
    loud = CliRunner().invoke(main, ["run", str(fake_dyn), str(IMAGE), "--out", str(tmp_path / "a"), "--no-draw"])
    assert loud.exit_code == 0, loud.output
    assert "img/s" in loud.stderr or "s/img" in loud.stderr          # the bar is there without -q (test can fail)
    quiet = CliRunner().invoke(main, ["run", str(fake_dyn), str(IMAGE), "--out", str(tmp_path / "b"), "--no-draw",
                                      "-q"])
    assert quiet.exit_code == 0, quiet.output
    assert "img/s" not in quiet.stderr and "s/img" not in quiet.stderr and "%|" not in quiet.stderr, quiet.stderr
