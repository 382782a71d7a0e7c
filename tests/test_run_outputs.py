"""artifacts: default export names that tell checkpoints apart, run folders that never collide, manifests that can
only ever name files inside their own folder."""

from __future__ import annotations

import json
from pathlib import Path

from gtpt_deploy.artifacts import (MANIFEST, checkpoint_stem, next_run_dir, onnx_path, read_manifest,
                                   remove_previous_run, write_manifest)


def test_export_names_follow_the_checkpoint(tmp_path):
    assert checkpoint_stem("models/gtpt_t_coco_sample.pth") == "gtpt_t_coco_sample"
    a, b = tmp_path / "run3" / "model_best.pth", tmp_path / "run4" / "model_best.pth"
    assert (checkpoint_stem(a), checkpoint_stem(b)) == ("run3_model_best", "run4_model_best")
    assert onnx_path(checkpoint_stem(a), 1, root=tmp_path) == tmp_path / "export" / "run3_model_best_b1.onnx"
    assert onnx_path("x", None, "fp16", root=tmp_path).name == "x_bdyn_fp16.onnx"


def test_run_dirs_and_manifests(tmp_path):
    assert next_run_dir(root=tmp_path) == tmp_path / "runs" / "run"
    (tmp_path / "runs" / "run").mkdir(parents=True)
    (tmp_path / "runs" / "run2").mkdir()
    assert next_run_dir(root=tmp_path) == tmp_path / "runs" / "run3"
    folder = tmp_path / "out"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "keep.txt"):
        (folder / name).write_text(name)
    write_manifest(folder, ["a.jpg", "b.jpg"])
    assert read_manifest(folder) == ["a.jpg", "b.jpg"]
    assert remove_previous_run(folder) == ["a.jpg", "b.jpg"]
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    # A tampered manifest cannot reach outside its folder.
    (tmp_path / "victim.txt").write_text("x")
    (folder / MANIFEST).write_text(json.dumps({"files": ["../victim.txt", "/etc/hostname", "keep.txt"]}))
    assert read_manifest(folder) == ["keep.txt"]
    remove_previous_run(folder)
    assert (tmp_path / "victim.txt").exists() and Path("/etc/hostname").exists()
