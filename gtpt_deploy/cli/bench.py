"""``gtpt-deploy bench``: artifacts side by side on the same person crops, or the whole run path on images."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import GtptError
from ..runtime.options import BoxSpec, RunnerSweep
from .main import ARTIFACT, F, box_options, bundle, echo_json, main, show_progress


def _batches(_ctx: click.Context, _param: click.Parameter, value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated batch sizes like 1,8, got '{value}'") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"expected batch sizes >= 1 like 1,8, got '{value}'")
    return out


def bench_runner_options(f: F) -> F:
    """--batch (a list) / --threads / --device and --provider (once, or once per artifact) / --no-flip as ONE
    argument ``runners: RunnerSweep`` of the command function; pipeline mode takes ``runners.first()``."""
    def build(batches: list[int], devices: tuple[str, ...], providers: tuple[str, ...], threads: int | None,
              no_flip: bool) -> RunnerSweep:
        return RunnerSweep(tuple(batches), tuple(devices), tuple(providers), threads, not no_flip)

    f = bundle("runners", build, ("batches", "devices", "providers", "threads", "no_flip"))(f)
    f = click.option("--no-flip", is_flag=True, help="Pipeline mode: without the flip test.")(f)
    f = click.option("--provider", "providers", multiple=True,
                     help="How .onnx files run: cpu / cuda / tensorrt (ONNX Runtime) or openvino[:f32|:bf16], once "
                          "for all or once per artifact.")(f)
    f = click.option("--device", "devices", multiple=True,
                     help="cpu / cuda[:N] once for all artifacts, or once per artifact in order.")(f)
    f = click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads of every backend.")(f)
    return click.option("--batch", "batches", default="1,8", show_default=True, callback=_batches,
                        help="Crops per call, comma-separated (pipeline mode: the first one, for dynamic-batch "
                             "artifacts).")(f)


@main.command("bench")
@click.argument("artifacts", nargs=-1, required=True, type=ARTIFACT)
@bench_runner_options
@click.option("--rounds", type=click.IntRange(min=1), default=None, show_default="20; pipeline mode 3",
              help="Timed interleaved rounds (pipeline mode: full passes over the images).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help="Untimed calls per artifact and batch before the rounds.")
@click.option("--torch-compile", is_flag=True,
              help="Also time torch.compile (inductor, freezing) of each .pth; its compile time is the 1st call.")
@click.option("--spin/--no-spin", default=None,
              help="Idle threads spin (library defaults) or wait passively  [default: passive, or $OMP_WAIT_POLICY]")
@box_options(boxes_help="Pipeline mode: COCO detections JSON, or 'gt' with --ann (as run).",
             ann_help="COCO keypoint file whose GT persons are the crops  [default: the bundled demo]; pipeline "
                      "mode: the annotations of --boxes gt.")
@click.option("--crop-images", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Image folder of --ann  [default: images/ beside it]")
@click.option("--images", type=click.Path(exists=True, path_type=Path), default=None,
              help="Pipeline mode: time the whole run path on these images (folder or file); images that fail "
                   "are counted and left out of the rates, and none processed is an error. The person boxes come "
                   "from --detector (with --box-thr, --detector-device, --detector-threads) or --boxes, as run.")
@click.option("--concurrency", default=None, metavar="1,4,16",
              help="Client-side mode for one artifact (e.g. triton://HOST:PORT/NAME): crops/s, p50/p90 per number "
                   "of concurrent clients, 1 to 64 (48 requests of --batch crops per level, at least 2 per client; "
                   "every client is opened before the clock starts).")
@click.option("--ship", is_flag=True,
              help="Which file to ship on this CPU: each .onnx with ONNX Runtime and OpenVINO (f32; bf16 where the "
                   "CPU has it), with AP deltas and budgets when --ann is given; ends with the fastest within budget.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
def bench_cmd(artifacts: tuple[Path, ...], runners: RunnerSweep, rounds: int | None, warmup: int,
              torch_compile: bool, spin: bool | None, boxes: BoxSpec, crop_images: Path | None,
              images: Path | None, concurrency: str | None, ship: bool, as_json: bool) -> None:
    """Latency and throughput of ARTIFACTS (.pth, .onnx, .engine) side by side on the same person crops.

    \b
    Each artifact runs in its own worker process (one computing at a time), so no backend slows another.
    Interleaved rounds (A B C A B C ...) so that a busy machine slows all alike; per artifact and batch: median,
    p90 and min ms per call, ms per crop, crops/s and the speed relative to the first artifact. The header and
    the JSON name the CPU (and its AVX2 / AVX-512 VNNI flags), GPUs, threads, load average and whether idle
    threads spin. Static-batch ONNX files are timed at their own batch only.
    With --images: the whole `run` path (decode, boxes, crops, pose with flip, decoding; no drawing) on one
    artifact: images/s, persons/s and the share of time outside the pose model and the detector.
    Examples:
      gtpt-deploy bench models/gtpt_t_coco_sample.pth export/gtpt_t_coco_bdyn.onnx --torch-compile --threads 1
      gtpt-deploy bench export/gtpt_t_coco_b1.onnx export/gtpt_t_coco_b1_fp16.onnx --batch 1 --json
      gtpt-deploy bench export/gtpt_t_coco_bdyn.onnx --images val2017/ --detector rtmdet_nano.onnx
      gtpt-deploy bench engines/t_b8_fp16.engine --images val2017/ --detector rtmdet_nano.onnx --detector-device cuda \\
          --box-thr 0.5 --detector-threads 2
      gtpt-deploy bench triton://127.0.0.1:8000/gtpt_pose --concurrency 1,4,16
      gtpt-deploy bench t_bdyn.onnx t_bdyn_fp16.onnx t_bdyn_int8.onnx --ship --ann val.json --threads 1
    """
    from ..runners.base import check_batch_size

    batches, threads, ann = list(runners.batches), runners.threads, boxes.ann
    for b in batches:                            # every mode, before any artifact is opened
        check_batch_size(b)
    say = (lambda line: click.echo(line, err=True)) if show_progress() else (lambda _line: None)   # -q: none
    if ship and (images is not None or concurrency is not None):
        raise GtptError("--ship times .onnx files on person crops; leave out --images and --concurrency")
    if concurrency is not None:
        if len(artifacts) != 1 or images is not None:
            raise GtptError("--concurrency times one artifact on person crops; pass one ARTIFACT and no --images")
        from ..eval.concurrency import bench_concurrency

        try:  # numbers of clients, checked (1..MAX_CLIENTS) by bench_concurrency
            levels = [int(v) for v in concurrency.split(",") if v.strip()]
        except ValueError:
            raise GtptError(f"--concurrency expects comma-separated numbers of concurrent clients like 1,4,16, got "
                            f"'{concurrency}'") from None
        report = bench_concurrency(artifacts[0], levels, batch=batches[0] if len(batches) == 1 else 1,
                                   threads=threads, ann=ann, images=crop_images, progress=say)
    elif images is not None:
        if len(artifacts) != 1:
            raise GtptError(f"pipeline mode (--images) times one artifact, got {len(artifacts)}; run bench once "
                            f"per artifact")
        from ..eval.pipeline_bench import bench_pipeline

        report = bench_pipeline(artifacts[0], images, runners.first(), boxes, rounds=rounds or 3, spin=spin,
                                progress=say)
    else:
        if boxes != BoxSpec(ann=boxes.ann) or not runners.flip:   # --ann alone names the crops' annotations
            raise GtptError("--detector, --boxes, --box-thr, --detector-device, --detector-threads and --no-flip "
                            "belong to pipeline mode; add --images DIR")
        from ..eval.bench import bench

        report = bench(artifacts, batches=batches, threads=threads, rounds=rounds or 20, warmup=warmup,
                       device=list(runners.devices) or None, provider=list(runners.providers) or None,
                       torch_compile=torch_compile,
                       spin=spin, ann=ann, images=crop_images, progress=say, ship=ship)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo("\n".join(report.format_lines()))
