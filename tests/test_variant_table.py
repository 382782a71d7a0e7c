"""models.variants: the stored model table equals what the registry and the counters give today, and
`gtpt-deploy models` prints it without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from gtpt_deploy.models.variants import variant_rows


@pytest.mark.parametrize("row", variant_rows(), ids=lambda r: r["name"])
def test_stored_row_equals_a_fresh_count(row):
    from gtpt_deploy.models.gtpt import GTPT
    from gtpt_deploy.models.variants import VARIANTS
    from gtpt_deploy.models.summary import count_macs, count_params

    cfg = VARIANTS[row["name"]]
    model = GTPT(cfg).eval()
    assert row["params"] == count_params(model)
    assert row["macs"] == count_macs(model)
    assert row["keypoints"] == cfg.num_keypoints and row["input_size"] == list(cfg.image_size)
    assert row["k_table"] == {k: list(v) for k, v in cfg.k_table.items()}
    assert row["description"] == cfg.description


def test_table_lists_every_registered_variant_in_order():
    from gtpt_deploy.models.variants import VARIANTS

    assert [r["name"] for r in variant_rows()] == list(VARIANTS)


def test_models_command_needs_no_torch():
    code = textwrap.dedent("""
        import json, sys
        from click.testing import CliRunner
        from gtpt_deploy.cli import main
        r = CliRunner().invoke(main, ["models", "--json"])
        assert r.exit_code == 0, r.output
        print(json.dumps({"torch": "torch" in sys.modules, "rows": len(json.loads(r.output)["models"])}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == '{"torch": false, "rows": 6}'


def test_registry_and_metadata_need_no_torch_and_create_model_names_the_extra():
    """The variant registry is data: with torch hidden, the configs, get_config and ModelMeta.for_config work, and only
    the torch names of gtpt_deploy.models fail, with the one-line hint naming the [export] extra."""
    code = textwrap.dedent("""
        import importlib.abc, json, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError(name + " is hidden in this test")
        sys.meta_path.insert(0, Block())
        import gtpt_deploy
        from gtpt_deploy.errors import MissingDependencyError
        from gtpt_deploy.metadata import ModelMeta
        from gtpt_deploy.models import VARIANTS, get_config
        meta = ModelMeta.for_config(get_config("gtpt_t_wholebody"), batch=None)
        assert gtpt_deploy.VARIANTS is VARIANTS and meta.num_keypoints == 133
        errors = []
        for name in ("create_model", "read_checkpoint", "GTPT"):
            try:
                getattr(importlib.import_module("gtpt_deploy.models"), name)
            except MissingDependencyError as e:
                errors.append(str(e))
        print(json.dumps({"torch": "torch" in sys.modules, "errors": errors}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["torch"] is False and len(got["errors"]) == 3
    assert all("pip install 'gtpt-deploy[export]'" in e for e in got["errors"])


def test_metadata_records_the_normalization_the_crops_use():
    """One source for MEAN/STD (models.variants): the metadata every artifact records holds exactly the float32 values
    runtime/transforms normalizes crops with, as it did when metadata imported them from transforms."""
    from gtpt_deploy.metadata import ModelMeta
    from gtpt_deploy.models.variants import VARIANTS
    from gtpt_deploy.runtime.transforms import MEAN_RGB, STD_RGB

    meta = ModelMeta.for_config(VARIANTS["gtpt_t_coco"], batch=1)
    assert meta.mean == tuple(float(v) for v in MEAN_RGB) == (0.48500001430511475, 0.4560000002384186,
                                                              0.4059999883174896)
    assert meta.std == tuple(float(v) for v in STD_RGB)
