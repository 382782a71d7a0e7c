"""validate's terminal table (issue 19 friction): it fits ~120 columns, COCO and whole-body alike, and still shows
every value the row has (the --json keeps everything)."""

from __future__ import annotations

from gtpt_deploy.eval.validate import TABLE_WIDTH, ValidationReport, ValidationRow

OPENVINO = "openvino 2026.4.1 [CPU bf16, 16 threads, Intel(R) Xeon(R) Platinum 8480+]"


def _row(name: str, runner: str, stages: int, **kw) -> ValidationRow:
    metrics = {"AP": 0.7123, "AP50": 0.9121, "AP75": 0.8012, "AR": 0.7504}
    base = dict(artifact=f"/some/where/export/{name}", runner=runner, metrics=metrics, AP=0.7123, delta_AP=-0.0012,
                argmax_agreement=0.8871, mean_disp_px=1.234, max_disp_px=45.678, within_budget=True,
                model_ms_per_crop=3.2, precision="int8", budget=0.005, kept_tokens=(0.981,) * stages,
                lineage="derived", same_model=True, reason="derived: made from the baseline")
    return ValidationRow(**{**base, **kw})


def _report(stages: int) -> ValidationReport:
    rows = [_row("gtpt_b_wholebody.pth", "torch 2.13.0+cu128 [cuda:0]", stages, lineage="baseline", delta_AP=0.0,
                 precision="fp32", budget=0.0, reason="the baseline"),
            _row("gtpt_b_wholebody_b8_int8cpu.onnx", OPENVINO, stages),
            _row("gtpt_b_wholebody_bdyn_fp16.onnx", "onnxruntime [CUDAExecutionProvider]", stages, precision="fp16"),
            _row("other_b8_int8.onnx", "onnxruntime [CPUExecutionProvider]", stages, lineage="other",
                 same_model=False, reason="not shown to be the baseline's model: another checkpoint (source sha256 "
                                          "aaaaaaaaaaaa.. vs the baseline's bbbbbbbbbbbb..), and argmax agreement "
                                          "0.412 < 0.75 (int8:tensorrt floor); validate it against the checkpoint "
                                          "it was made from")]
    return ValidationReport(rows, 0.005, "detector end2end.onnx", 5000, 6352)


def test_table_fits_120_columns_and_keeps_every_value():
    for stages in (3, 7):                   # COCO and whole-body (7 pruning stages)
        report = _report(stages)
        text = report.format_table()
        assert TABLE_WIDTH == 120 and max(len(line) for line in text.splitlines()) <= TABLE_WIDTH, text
        joined = " ".join(text.split())        # wrapped lines rejoined
        for r in report.rows:
            assert f"{r.artifact.rsplit('/', 1)[1]}" in joined and r.runner in joined
            assert f"{r.delta_AP:+.4f}" in joined and f"{r.max_disp_px:.3f}" in joined and r.precision in joined
        assert " ".join(["0.981"] * stages) in text and "int8:tensorrt floor" in joined
        assert "other_b8_int8.onnx FAIL: not shown to be the baseline's model" in joined
        assert "boxes: detector end2end.onnx; 5000 images, 6352 persons" in joined
        assert text.splitlines()[-1].startswith("OVER the budget")
