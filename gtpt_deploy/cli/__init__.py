"""The ``gtpt-deploy`` command line (click). ``main`` is the console-script entry point.

``main.py`` holds the group and the shared helpers; each stage's commands live in a module of their own and
register themselves on ``main`` when imported here. Each command parses options and calls one library function.
"""

from . import bench, build, evaluate, export, info, precision, run, serve, triton  # noqa: F401  (registers the commands)
from .main import main

__all__ = ["main"]
