"""Fake ``tensorrt`` 11.x for the CPU tests (see ``fake_tensorrt/impl.py``): none of the names 11.x removed. Put
``tests/fake_tensorrt/v11`` on sys.path to import it as ``tensorrt``."""

from fake_tensorrt.impl import make_api

globals().update(make_api(11, "11.4.0.7"))
