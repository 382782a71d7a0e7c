"""Fake ``tensorrt`` 10.x for the CPU tests (see ``fake_tensorrt/impl.py``). Put ``tests/fake_tensorrt/v10`` on
sys.path to import it as ``tensorrt``."""

from fake_tensorrt.impl import make_api

globals().update(make_api(10, "10.13.3.9"))
