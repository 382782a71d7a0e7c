#!/usr/bin/env python3
"""Issue 17's table: the defaults (export -> fp16 -> calibrate, both targets -> validate) on checkpoints the defaults
were never tuned on, each step through the CLI exactly as a user would type it (no option beyond the data paths).

Usage:
  python benchmarks/checkpoint_table.py CKPT.pth [CKPT.pth ...] [--work DIR] [--shared ../shared]
The checkpoints come from ``tools/train_checkpoints.sh`` (a cache folder, never git). COCO checkpoints calibrate on
``coco_train2017_mini`` and validate on ``coco_val2017_pose``; whole-body ones use the 5-image whole-body set for
both (the only one there is; calibrate then measures on persons it held out). Prints one markdown row per
checkpoint and writes every command's ``--json`` to DIR/<name>/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def gtpt(args: list[str], log: Path) -> tuple[int, dict]:
    """Run ``gtpt-deploy ARGS --json``; the exit code and the parsed JSON (stderr kept in ``log``)."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "gtpt_deploy", *args, "--json"], capture_output=True, text=True)
    log.write_text(f"$ gtpt-deploy {' '.join(args)} --json\n# exit {p.returncode} in {time.perf_counter() - t:.0f} s\n"
                   f"{p.stderr}\n{p.stdout}")
    try:
        return p.returncode, json.loads(p.stdout) if p.stdout.strip() else {}
    except json.JSONDecodeError:
        return p.returncode, {}


def variant_of(ckpt: Path) -> str:
    from gtpt_deploy.models.checkpoint import detect_variant, read_checkpoint

    return detect_variant(read_checkpoint(ckpt)[0])


def one(ckpt: Path, work: Path, data: Path, openvino: bool = True) -> dict:
    name = ckpt.stem
    out = work / name
    out.mkdir(parents=True, exist_ok=True)
    variant = variant_of(ckpt)
    if variant.endswith("wholebody"):
        ann = data / "coco_wholebody_val_example" / "coco_wholebody_val_v1.0_5img.json"
        cal_ann, cal_img = ann, data / "coco_wholebody_val_example" / "images"
        val_ann, val_img = cal_ann, cal_img
    else:
        cal_ann = data / "coco_train2017_mini" / "person_keypoints_train2017_subset.json"
        cal_img = data / "coco_train2017_mini" / "images"
        val_ann = data / "coco_val2017_pose" / "person_keypoints_val2017_subset.json"
        val_img = data / "coco_val2017_pose" / "images"
    row: dict = {"checkpoint": name, "variant": variant}
    onnx = out / f"{name}_b1.onnx"
    rc, exp = gtpt(["export", "--checkpoint", str(ckpt), "--output", str(onnx), "--force"], out / "export.log")
    row["export_rc"] = rc
    row["near_ties"] = exp.get("near_ties")
    row["parity"] = {"max_abs_diff": exp.get("max_abs_diff"), "argmax_agreement": exp.get("argmax_agreement")}
    if rc != 0:
        return row
    rc, fp16 = gtpt(["fp16", str(onnx), "--force"], out / "fp16.log")
    row["fp16_rc"] = rc
    files = [fp16.get("output")] if rc == 0 else []
    for target in ("tensorrt", "cpu"):
        rc, cal = gtpt(["calibrate", str(onnx), "--ann", str(cal_ann), "--images", str(cal_img), "--target", target,
                        "--force"], out / f"calibrate_{target}.log")
        row[f"int8_{target}_rc"] = rc
        row[f"int8_{target}_calibrate"] = {k: cal.get(k) for k in (
            "output", "crops", "available_persons", "fp32_AP", "int8_AP", "delta_AP", "delta_AP_lower_bound",
            "argmax_agreement", "budget_search", "steps", "recipe") if k in cal}
        row[f"int8_{target}_calibrate"]["eval"] = {k: (cal.get("eval") or {}).get(k) for k in ("source", "persons")}
        if rc == 0 and cal.get("output"):
            files.append(cal["output"])
    rc, val = gtpt(["validate", str(ckpt), str(onnx), *[f for f in files if f], "--ann", str(val_ann),
                    "--images", str(val_img)], out / "validate.log")
    row["validate_rc"] = rc
    keys = ("artifact", "runner", "precision", "AP", "wholebody", "delta_AP", "budget", "argmax_agreement",
            "within_budget", "kept_tokens", "same_model", "lineage", "passed")
    row["rows"] = [{k: r.get(k) for k in keys} for r in val.get("rows", [])]
    if not openvino:
        return row
    # OpenVINO bf16 (issue 20): the FP32 file and the TensorRT-form INT8 file run by OpenVINO at bf16, own rows
    int8_trt = row.get("int8_tensorrt_calibrate", {}).get("output")
    rc, ov = gtpt(["validate", str(ckpt), str(onnx), *([int8_trt] if int8_trt else []), "--ann", str(val_ann),
                   "--images", str(val_img), "--provider", "openvino:bf16"], out / "validate_openvino.log")
    row["validate_openvino_rc"] = rc
    row["rows"] += [{**{k: r.get(k) for k in keys}, "provider": "openvino:bf16"} for r in ov.get("rows", [])[1:]]
    return row


def fmt(row: dict) -> str:
    """One markdown line: checkpoint, variant, export (near-ties), then AP (dAP, argmax, PASS/FAIL) per row."""
    ties = row.get("near_ties") or []
    cells = [row["checkpoint"], row["variant"],
             (f"yes, {len(ties)} near-tie(s)" if row.get("export_rc") == 0 else f"NO ({row.get('export_rc')})")]
    for r in row.get("rows") or []:
        ap = r.get("AP") if r.get("AP") is not None else r.get("wholebody")     # COCO-WholeBody: its headline
        ap = ap.get("AP") if isinstance(ap, dict) else ap
        d = r.get("delta_AP")
        who = r.get("precision") + (" ov" if r.get("provider") else "")
        verdict = "" if r.get("passed") is None else (" PASS" if r.get("passed") else " FAIL")
        if ap is None:
            cells.append(f"{who}: no AP")
            continue
        cells.append(f"{who}: {ap:.4f}" + (f" ({d:+.4f}, {r.get('argmax_agreement'):.3f}){verdict}"
                                           if d is not None and r is not row["rows"][0] else ""))
    for target in ("tensorrt", "cpu"):
        c = row.get(f"int8_{target}_calibrate") or {}
        steps = c.get("steps") or []
        if not c.get("steps"):
            cells.append(f"calibrate {target}: failed (exit {row.get(f'int8_{target}_rc')})")
            continue
        first, last = steps[0], steps[-1]
        cells.append(f"calibrate {target}: {first['delta_AP']:+.4f} (bound {first.get('delta_AP_lower_bound', 0):+.4f})"
                     + (f" -> {last['delta_AP']:+.4f} (bound {last.get('delta_AP_lower_bound', 0):+.4f}) with "
                        f"[{', '.join(last['float_groups'])}] float" if len(steps) > 1 else "")
                     + f" on {c.get('eval', {}).get('persons')} {c.get('eval', {}).get('source')}, "
                       f"{len(steps)} step(s)")
    return "| " + " | ".join(str(c) for c in cells) + " |"


def name_json(ckpt: Path) -> str:
    return f"{ckpt.stem}.row.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/gtpt_checkpoint_table"))
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("GTPT_SHARED", "../shared")))
    ap.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO bf16 validation (issue 20)")
    args = ap.parse_args()
    rows = []
    for ckpt in args.checkpoints:
        row = one(ckpt, args.work, args.shared / "data", not args.no_openvino)
        rows.append(row)
        (args.work / name_json(ckpt)).write_text(json.dumps(row, indent=1))
        print(fmt(row), flush=True)
    (args.work / "table.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
