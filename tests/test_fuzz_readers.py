"""Fuzz the two artifact readers with a few hundred junk files: random bytes, truncated and bit-flipped real files,
text and other formats. The only acceptable outcomes are a load or a one-line GtptError (never a traceback)."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from gtpt_deploy.errors import GtptError
from gtpt_deploy.models import create_model
from gtpt_deploy.runners import create_runner
from gtpt_fixtures import PEOPLE, write_fake_pose_onnx

TEXTS = [b"", b"hello", b"hello world\n", b"https://example.com/models/gtpt_t_coco.pth\n", b"(", b"]", b"}", b"K",
         b"c__builtin__\neval\n", b"\x80", b"\x80\x02", b"\x80\x05\x95", b"<html><body>404</body></html>",
         b'{"state_dict": {}}', b"state_dict:\n  a: 1\n", b"a,b,c\n1,2,3\n", b"import os\nos.system('x')\n",
         b"PK\x03\x04", b"PK\x05\x06" + b"\0" * 18, b"\x89HDF\r\n\x1a\n", b"GIF87a", b"GIF89a", b"\xff\xd8\xff\xe0",
         b"\x89PNG\r\n\x1a\n", b"\x1f\x8b\x08", b"BZh91AY&SY", b"\x08\x07\x12\x04test", b"\n\x0cgtpt"]


def _foreign_formats(tmp: Path) -> list[bytes]:
    """Whole files of other formats: images, archives, numpy, pickles without tensors, a zip of text."""
    out = [(PEOPLE / "zidane.jpg").read_bytes()[:20000]]
    buf = io.BytesIO()
    np.save(buf, np.arange(10))
    out.append(buf.getvalue())
    out.append(gzip.compress(b"not a checkpoint" * 100))
    for obj in ({"a": 1}, [1, 2, 3], "text", {"state_dict": {"x": 1}}, {"features.w": [1.0]}, None, 3.5):
        out.append(pickle.dumps(obj, protocol=2))
        b = io.BytesIO()
        torch.save(obj, b)
        out.append(b.getvalue())
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("archive/data.pkl", b"hello")
        z.writestr("archive/version", b"3\n")
    out.append(b.getvalue())
    b = io.BytesIO()
    torch.save({"ema_features.keypoint_token": torch.zeros(1, 17, 64)}, b)      # a GTPT key, but not a model
    out.append(b.getvalue())
    return out


def _junk(real: bytes, rng: np.random.Generator, n_random: int, n_cut: int,
          n_flip: int) -> tuple[list[bytes], list[bytes]]:
    """-> (random blobs and truncations of ``real``, copies of ``real`` with 8 flipped bits)."""
    files, flipped = [], []
    for _ in range(n_random):
        size = int(rng.choice([1, 2, 7, 64, 512, 4096]))
        blob = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        prefix = [b"", b"\x80\x02", b"PK\x03\x04", b"(", b"\x08\x07"][int(rng.integers(5))]
        files.append(prefix + blob)
    for cut in np.unique(np.linspace(1, len(real) - 1, n_cut).astype(int)):
        files.append(real[:cut])
    for _ in range(n_flip):
        b = bytearray(real)
        for pos in rng.integers(0, len(b), 8):
            b[pos] ^= 1 << int(rng.integers(8))
        flipped.append(bytes(b))
    return files, flipped


def _expect_load_or_one_line_error(load, path: Path) -> str:
    try:
        load(path)
    except GtptError as e:
        assert str(e).strip() and "\n" not in str(e), (path, str(e))
        return "error"
    return "loaded"


def test_fuzz_checkpoint_reader_and_onnx_loader(seed0_t_checkpoint, tmp_path):
    rng = np.random.default_rng(11)
    foreign = TEXTS + _foreign_formats(tmp_path)
    ckpt_junk, ckpt_flipped = _junk(seed0_t_checkpoint.read_bytes(), rng, 80, 40, 8)
    onnx_real = write_fake_pose_onnx(tmp_path / "real.onnx", batch=None).read_bytes()
    onnx_junk, onnx_flipped = _junk(onnx_real, rng, 60, 60, 12)
    onnx_junk.append(write_fake_pose_onnx(tmp_path / "nometa.onnx", batch=None, meta=False).read_bytes())
    ckpt_junk, onnx_junk = foreign + ckpt_junk, foreign + onnx_junk
    assert len(ckpt_junk + ckpt_flipped + onnx_junk + onnx_flipped) >= 300

    def open_runner(path: Path) -> None:
        with create_runner(path):
            pass

    def open_checkpoint(path: Path) -> None:
        create_model(checkpoint=path)          # read_checkpoint, then variant detection and the strict key check

    outcomes = {}
    for kind, files, load in (("pth", ckpt_junk, open_checkpoint), ("pth flipped", ckpt_flipped, open_checkpoint),
                              ("onnx", onnx_junk, open_runner), ("onnx flipped", onnx_flipped, open_runner)):
        outcomes[kind] = {"error": 0, "loaded": 0}
        for i, data in enumerate(files):
            path = tmp_path / f"junk_{i}.{kind.split()[0]}"
            path.write_bytes(data)
            outcomes[kind][_expect_load_or_one_line_error(load, path)] += 1
            path.unlink()
    # Every junk file is refused. A bit flip inside weight data may still load (neither format has a checksum);
    # that it did not raise anything but a GtptError is the point there.
    assert outcomes["pth"]["loaded"] == 0 and outcomes["onnx"]["loaded"] == 0, json.dumps(outcomes)
