#!/usr/bin/env bash
# Behaviour-identity check for refactors (issue 19): the same artifacts through `run` and `validate --json` of one
# code tree. Run it on the old tree and the new one, then compare: results.json and drawn images with cmp, the
# validate JSON without its timing key (model_ms_per_crop).
# usage: benchmarks/identity_check.sh TREE OUTDIR ARTDIR [CHECKPOINT]
#   TREE: a checkout (or `git worktree add --detach`) of the code to run; ARTDIR: artifacts, made once by the first
#   call (export b1 + bdyn, fp16, calibrate) and reused by the next; CHECKPOINT: default TREE/models/gtpt_t_coco_sample.pth
#   copied into ARTDIR on the first call, so both trees see the same checkpoint.
set -euo pipefail
TREE=$(realpath "$1"); OUT=$(realpath -m "$2"); A=$(realpath -m "$3")
S=$(realpath "${GTPT_SHARED:-$TREE/../shared}")/data; D=$S/models/rtmdet_nano_person/end2end.onnx
G="env PYTHONPATH=$TREE OMP_NUM_THREADS=1 ${PYTHON:-python} -m gtpt_deploy"
VAL="--ann $S/coco_val2017_pose/person_keypoints_val2017_subset.json --images $S/coco_val2017_pose/images"
cd "$TREE"; rm -rf "$OUT"; mkdir -p "$OUT" "$A"
if [ ! -e "$A/s_b1.onnx" ]; then
  cp "${4:-$TREE/models/gtpt_t_coco_sample.pth}" "$A/sample.pth"
  $G export --checkpoint "$A/sample.pth" --output "$A/s_b1.onnx" -q >/dev/null
  $G export --checkpoint "$A/sample.pth" --dynamic-batch --output "$A/s_bdyn.onnx" -q >/dev/null
  $G fp16 "$A/s_b1.onnx" -q >/dev/null
  $G calibrate "$A/s_b1.onnx" --ann "$S/coco_train2017_mini/person_keypoints_train2017_subset.json" \
     --images "$S/coco_train2017_mini/images" -q >/dev/null
fi
DEMO="demo/images --ann demo/person_keypoints_demo.json"
$G run "$A/sample.pth" $DEMO --detector "$D" --out "$OUT/r1" --no-draw -q
$G run "$A/sample.pth" $DEMO --boxes gt --out "$OUT/r2" --no-draw -q
$G run "$A/s_b1.onnx" $DEMO --detector "$D" --out "$OUT/r3" --no-draw -q
$G run "$A/s_bdyn.onnx" $DEMO --boxes gt --batch 4 --out "$OUT/r4" --no-draw -q
$G run "$A/s_b1.onnx" demo/images --detector "$D" --out "$OUT/r5" -q
$G validate "$A/sample.pth" "$A/s_b1.onnx" "$A/s_b1_fp16.onnx" "$A/s_b1_int8.onnx" $VAL --json -q > "$OUT/v1.json" || true
$G validate "$A/s_b1.onnx" "$A/s_bdyn.onnx" --ann demo/person_keypoints_demo.json --images demo/images \
   --detector "$D" --json -q > "$OUT/v2.json" || true
echo "outputs in $OUT"
