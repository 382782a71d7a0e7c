"""The ``gtpt-deploy`` command line. Each command parses options and calls one library function; no logic here.

User errors (:class:`GtptError`) print one line and exit non-zero without a traceback; bugs keep their traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from ..errors import GtptError
from ..threads import apply_thread_policy

F = TypeVar("F", bound=Callable[..., Any])



def _set_verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        logging.getLogger().setLevel(logging.DEBUG if param.name == "verbose" else logging.WARNING)
        ctx.meta["gtpt.quiet"] = param.name == "quiet"   # ctx.meta is shared by the group and its subcommand


VERBOSITY = (
    click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True, callback=_set_verbosity,
                 help="Log debug messages."),
    click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, is_eager=True, callback=_set_verbosity,
                 help="Only warnings and errors on stderr."),
)


class _Group(click.Group):
    """Turns a GtptError raised by any command into one ``error: ...`` line and exit code 2, and gives every
    command ``-v/-q`` (so they work after the subcommand too, as users of other CLIs expect)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        have = {o for p in cmd.params for o in getattr(p, "opts", [])}
        cmd.params.extend(o for o in VERBOSITY if not set(o.opts) & have)
        super().add_command(cmd, name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GtptError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)


class ArtifactArg(click.ParamType):
    """An existing artifact file (-> Path) or a served model ``triton://HOST:PORT/NAME`` (-> str, kept as typed)."""

    name = "artifact"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.startswith("triton://"):
            return value
        return click.Path(exists=True, dir_okay=False, path_type=Path).convert(value, param, ctx)


ARTIFACT = ArtifactArg()


def show_progress() -> bool:
    """Progress bars are info output: shown unless -q (before or after the subcommand) asked for warnings only."""
    ctx = click.get_current_context(silent=True)
    return not (ctx is not None and ctx.meta.get("gtpt.quiet", False))


def echo_json(data: Any) -> None:
    """Exactly one JSON object on stdout (progress and logs go to stderr)."""
    click.echo(json.dumps(data, indent=2, default=str))


#: --provider values: ONNX Runtime execution providers, then OpenVINO with its inference precision
PROVIDER_CHOICES = ["cpu", "cuda", "tensorrt", "openvino", "openvino:f32", "openvino:bf16"]


def where_options(what: str = "the pose artifacts") -> Callable[[F], F]:
    """--device / --provider / --threads: where an artifact runs (each runner resolves its own)."""
    def wrap(f: F) -> F:
        f = click.option("--threads", type=click.IntRange(min=1), default=None,
                         help=f"CPU threads of {what} (default: the backend's; 1 helps on a busy machine).")(f)
        f = click.option("--provider", type=click.Choice(PROVIDER_CHOICES), default=None,
                         show_default="cpu on --device cpu, else cuda",
                         help="How .onnx artifacts run: ONNX Runtime provider cpu / cuda / tensorrt (GPU ones need "
                              "onnxruntime-gpu; never a silent CPU fallback), or OpenVINO on the CPU ([openvino] "
                              "extra): openvino (bf16 where the CPU has it natively, else f32), openvino:f32, "
                              "openvino:bf16.")(f)
        # None = each artifact's own default: an engine runs only on a GPU (cuda), everything else on the CPU
        return click.option("--device", default=None, show_default="cuda for .engine/.plan, else cpu",
                            metavar="cpu|cuda|cuda:N",
                            help=f"Where {what} run: .pth (torch), .onnx (with a GPU --provider), .engine.")(f)
    return wrap


def bundle(name: str, build: Callable[..., Any], keys: tuple[str, ...]) -> Callable[[F], F]:
    """Hand the command function one ``name=build(**options)`` argument instead of the click options ``keys``
    (those the command has; the others keep ``build``'s defaults). Apply it below the options it bundles."""
    def wrap(f: F) -> F:
        @functools.wraps(f)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs[name] = build(**{k: kwargs.pop(k) for k in keys if k in kwargs})
            return f(*args, **kwargs)
        return command  # type: ignore[return-value]
    return wrap


def runner_options(what: str = "the pose artifact", batch_help: str | None = None,
                   flip: bool = True) -> Callable[[F], F]:
    """--device / --provider / --threads, --batch (when ``batch_help``) and --no-flip (when ``flip``) as ONE
    argument ``runner: RunnerSpec`` of the command function (``runtime.options.RunnerSpec``).

    To adopt it in a command (e.g. validate or calibrate): replace ``@where_options(...)`` and its own --batch /
    --no-flip options by ``@runner_options("the artifacts", batch_help="...")``, drop the loose parameters
    ``device, provider, threads, batch, no_flip`` and take ``runner: RunnerSpec`` instead; pass it on whole
    (``Predictor`` users: ``runtime.core.open_predictor(artifact, runner)``).
    """
    def wrap(f: F) -> F:
        from ..runtime.options import RunnerSpec

        def build(no_flip: bool = False, **kw: Any) -> RunnerSpec:
            return RunnerSpec(flip=not no_flip, **kw)

        f = bundle("runner", build, ("device", "provider", "threads", "batch", "no_flip"))(f)
        f = where_options(what)(f)
        if batch_help is not None:
            f = click.option("--batch", type=click.IntRange(min=1), default=None, help=batch_help)(f)
        if flip:
            f = click.option("--no-flip", is_flag=True,
                             help="Skip the flip test (about 2x faster, slightly less accurate).")(f)
        return f
    return wrap


def box_options(boxes_help: str | None = None, ann_help: str | None = None) -> Callable[[F], F]:
    """The person boxes as ONE argument ``boxes: BoxSpec`` of the command function (``runtime.options.BoxSpec``):
    --detector / --box-thr / --detector-device / --detector-threads, plus --boxes and --ann when their help is
    given (each command says what its --ann is for).

    To adopt it (e.g. validate): replace ``@detector_options`` and its --boxes / --ann options by
    ``@box_options(boxes_help="...", ann_help="...")``, drop ``detector, box_thr, detector_device,
    detector_threads, boxes, ann`` and take ``boxes: BoxSpec``; ``boxes.source()`` is the box source.
    """
    def wrap(f: F) -> F:
        from ..runtime.options import BoxSpec

        f = bundle("boxes", BoxSpec, ("boxes", "detector", "ann", "box_thr", "detector_device",
                                      "detector_threads"))(f)
        if ann_help is not None:
            f = click.option("--ann", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                             help=ann_help)(f)
        if boxes_help is not None:
            f = click.option("--boxes", default=None, metavar="gt|DETS.json", help=boxes_help)(f)
        return detector_options(f)
    return wrap


def calib_options(when: str) -> Callable[[F], F]:
    """--calib-ann / --calib-images / --calib-num as ONE argument ``calib: CalibSpec`` (``runtime.options``);
    ``when`` starts each help line (e.g. "int8: "). To adopt it, drop ``calib_ann, calib_images, calib_num``."""
    def wrap(f: F) -> F:
        from ..runtime.options import CalibSpec

        def build(calib_ann: Path | None = None, calib_images: Path | None = None,
                  calib_num: int | None = None) -> CalibSpec:
            return CalibSpec(calib_ann, calib_images, calib_num)

        f = bundle("calib", build, ("calib_ann", "calib_images", "calib_num"))(f)
        f = click.option("--calib-num", type=click.IntRange(min=1), default=None,
                         show_default="every usable person left for calibration, at most 512",
                         help=f"{when}how many calibration crops (seeded selection).")(f)
        f = click.option("--calib-images", type=click.Path(exists=True, file_okay=False, path_type=Path),
                         default=None, help=f"{when}the folder with the images of --calib-ann.")(f)
        return click.option("--calib-ann", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                            default=None,
                            help=f"{when}COCO keypoint file whose GT person boxes are the calibration crops.")(f)
    return wrap


def detector_options(f: F) -> F:
    """--detector / --box-thr / --detector-device / --detector-threads: the person detector and where it runs."""
    f = click.option("--detector-threads", type=click.IntRange(min=1), default=None,
                     help="CPU threads of the detector (ONNX Runtime's default when omitted).")(f)
    f = click.option("--detector-device", default="cpu", show_default=True, metavar="cpu|cuda|cuda:N",
                     help="Where the detector runs (independent of the pose artifact's --device).")(f)
    f = click.option("--box-thr", type=float, default=None, show_default="0.3 detector, 0.0 JSON",
                     help="Minimum person box score.")(f)
    return click.option("--detector", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        help="Person detector ONNX with dets/labels outputs (e.g. RTMDet-nano person).")(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="gtpt-deploy")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
def main(verbose: bool, quiet: bool) -> None:
    """Deploy GTPT pose transformers: checkpoint -> ONNX -> TensorRT, run on images, validate COCO AP.

    \b
    Examples:
      gtpt-deploy models
      gtpt-deploy export --checkpoint models/gtpt_t_coco_sample.pth
      gtpt-deploy run export/gtpt_t_coco_b1.onnx photos/ --detector rtmdet_nano.onnx
      gtpt-deploy validate models/gtpt_t_coco_sample.pth export/gtpt_t_coco_b1.onnx --ann val.json --images val/
    """
    if quiet:
        click.get_current_context().meta["gtpt.quiet"] = True
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
                        format="%(message)s")
    apply_thread_policy()


