"""The README's main job (export -> run -> validate) on the embedded defaults, end to end on CPU."""

from __future__ import annotations

import json

from click.testing import CliRunner

from gtpt_deploy.cli import main
from gtpt_deploy.demo import SAMPLE_CHECKPOINT, default_detector


def test_demo_runs_end_to_end(shared, tmp_path):
    """The demo end to end; also issue 17 item 4: INT8 is calibrated on coco_train2017_mini (not the demo persons it
    is validated on), the demo says in one line what the sample model is and is not; and --json (issue 19)."""
    from gtpt_deploy.demo import SAMPLE_NOTE, default_calibration

    assert SAMPLE_CHECKPOINT.is_file(), "the sample checkpoint models/gtpt_t_coco_sample.pth is part of the repo"
    assert default_detector() is not None, "the shared RTMDet-nano detector should be found next to the repo"
    cal = default_calibration()
    assert cal is not None and cal[0].name == "person_keypoints_train2017_subset.json"
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["calibration_ann"].endswith("person_keypoints_train2017_subset.json")
    assert d["int8"]["eval"]["ann"].endswith("person_keypoints_train2017_subset.json")   # held-out train persons
    assert d["passed"] is True and len(d["validation"]["rows"]) == 4
    assert SAMPLE_NOTE in result.stderr and "NOT a general pose model" in SAMPLE_NOTE
    assert (out / "gtpt_t_coco_sample_b1.onnx").is_file()
    records = json.loads((out / "run" / "results.json").read_text())
    assert len(records) >= 8, "the detector finds persons on the bundled images"
    drawn = [p for p in (out / "run").iterdir() if p.suffix == ".jpg"]
    assert len(drawn) == 8, "one annotated copy per bundled image"
    # The validate table: the ONNX file equals PyTorch exactly (FP32 budget dAP = 0) on a memorized model.
    lines = result.output.splitlines()
    # each artifact: a line with its name and runner, then its numbers
    rows = {name: numbers for name, numbers in zip(lines, lines[1:])}
    base = next(rows[line] for line in rows if "(base)" in line and "torch " in line)
    onnx_row = next(rows[line] for line in rows
                    if line.startswith("gtpt_t_coco_sample_b1.onnx") and "onnxruntime [" in line)
    base_ap = float(base.split()[0])
    assert base_ap >= 0.50, f"the memorized sample should score high on its own images, got AP {base_ap}"
    assert " +0.0000 " in onnx_row and " 1.0000 " in onnx_row, onnx_row
    assert "within the budget" in result.output
    # the precision chain: FP16 and INT8 files beside the FP32 one, each a validate row with its precision
    assert (out / "gtpt_t_coco_sample_b1_fp16.onnx").is_file() and (out / "gtpt_t_coco_sample_b1_int8.onnx").is_file()
    assert any(line.startswith("gtpt_t_coco_sample_b1_fp16.onnx") and " fp16 " in rows[line] for line in rows)
    assert any(line.startswith("gtpt_t_coco_sample_b1_int8.onnx") and " int8 " in rows[line] for line in rows)

