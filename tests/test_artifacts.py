"""gtpt_deploy.artifacts: unit commits, the atomic no-overwrite check, stale temporaries, write failures."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gtpt_deploy import artifacts
from gtpt_deploy.artifacts import check_writable, write_json
from gtpt_deploy.errors import ArtifactExistsError, OutputPathError


def _dead_pid() -> int:
    """The pid of a process that has exited (reaped): no process owns it now."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _full_disk(tmp: Path, data: bytes) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))


def test_concurrent_writers_cannot_both_succeed(tmp_path):
    """Both pass the up-front check; the second commit finds the name taken and keeps nothing of its own."""
    target = tmp_path / "model.onnx"
    first, second = artifacts.ArtifactSet(), artifacts.ArtifactSet()
    for s in (first, second):
        check_writable(target, force=False)
        s.write_bytes(target.with_suffix(".json"), b"report")
        s.write_bytes(target, b"model of " + (b"first" if s is first else b"second"))
    first.commit()
    with pytest.raises(ArtifactExistsError, match="created by someone else"):
        second.commit()
    assert target.read_bytes() == b"model of first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.onnx"]   # no temporaries left


def test_set_commits_in_order_and_discards_on_error(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with artifacts.ArtifactSet() as files:
            files.write_bytes(tmp_path / "a.png", b"a")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with artifacts.ArtifactSet() as files:
        files.write_bytes(tmp_path / "a.png", b"a")
        files.write_json(tmp_path / "results.json", [1])
    assert (tmp_path / "a.png").read_bytes() == b"a" and json.loads((tmp_path / "results.json").read_text()) == [1]
    with artifacts.ArtifactSet(force=True) as files:                 # --force replaces
        files.write_bytes(tmp_path / "a.png", b"b")
    assert (tmp_path / "a.png").read_bytes() == b"b"


def test_stale_temporaries_of_dead_owners_are_removed(tmp_path):
    dead = tmp_path / f".model.onnx.{_dead_pid()}.abc123.tmp"
    mine = tmp_path / f".model.onnx.{os.getpid()}.xyz_9.tmp"
    other = tmp_path / ".hidden.tmp"                       # not our naming scheme: left alone
    for p in (dead, mine, other):
        p.write_bytes(b"x")
    check_writable(tmp_path / "model.onnx", force=False)   # every writing stage starts with this check
    assert not dead.exists() and mine.exists() and other.exists()
    assert artifacts.clean_stale_temps(tmp_path) == []


def test_temporaries_carry_the_owner_pid(tmp_path):
    files = artifacts.ArtifactSet()
    tmp = files.temp(tmp_path / "x.onnx")
    assert tmp.parent == tmp_path and tmp.name.startswith(f".x.onnx.{os.getpid()}.") and tmp.name.endswith(".tmp")
    files.discard()
    assert not tmp.exists()


def test_full_disk_is_one_line_error_and_leaves_nothing(tmp_path, monkeypatch):
    (tmp_path / "results.json").write_text("old")
    monkeypatch.setattr(artifacts, "_write", _full_disk)
    with pytest.raises(OutputPathError, match="No space left on device") as e:
        write_json(tmp_path / "results.json", {"a": 1}, force=True)
    assert "\n" not in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"] and (tmp_path / "results.json").read_text() == "old"


def test_json_artifacts_never_hold_nan(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "r.json", [{"score": float("nan")}])
    assert list(tmp_path.iterdir()) == []


def test_output_under_proc_is_a_one_line_error(tmp_path):
    for target in (Path("/proc/gtpt_deploy_test/out.json"), Path("/proc/out.json")):
        with pytest.raises(OutputPathError):
            check_writable(target, force=True)
            write_json(target, {})                          # root may pass the access check; the write cannot


def test_outputs_that_are_inputs_are_refused_even_with_force(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"photo")
    link = tmp_path / "b.jpg"
    os.link(photo, link)                                    # the same file under another name
    for force in (False, True):
        for target in (photo, link):
            with pytest.raises(OutputPathError, match="one of the input files") as e:
                artifacts.check_outputs([target], force, inputs=[photo])
            assert "--force" not in str(e.value)
    artifacts.check_outputs([tmp_path / "results.json"], False, inputs=[photo])   # names that cannot collide are fine
