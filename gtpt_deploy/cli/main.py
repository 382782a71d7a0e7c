"""The ``gtpt-deploy`` command line. Each command parses options and calls one library function; no logic here.

User errors (:class:`GtptError`) print one line and exit non-zero without a traceback; bugs keep their traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import GtptError
from ..threads import apply_thread_policy



class _Group(click.Group):
    """Turns a GtptError raised by any command into one ``error: ...`` line and exit code 2."""

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


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="gtpt-deploy")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def main(verbose: bool) -> None:
    """Deploy GTPT pose transformers: checkpoint -> ONNX -> TensorRT, run on images, validate COCO AP.

    \b
    Examples:
      gtpt-deploy models
      gtpt-deploy export --checkpoint models/gtpt_t_coco_sample.pth
      gtpt-deploy run export/gtpt_t_coco_b1.onnx photos/ --detector rtmdet_nano.onnx
      gtpt-deploy validate models/gtpt_t_coco_sample.pth export/gtpt_t_coco_b1.onnx --ann val.json --images val/
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")
    apply_thread_policy()


