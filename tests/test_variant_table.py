"""variant_table: the stored model table equals what the registry and the counters give today, and
`gtpt-deploy models` prints it without importing torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from gtpt_deploy.variant_table import variant_rows


@pytest.mark.parametrize("row", variant_rows(), ids=lambda r: r["name"])
def test_stored_row_equals_a_fresh_count(row):
    from gtpt_deploy.models.gtpt import GTPT, VARIANTS
    from gtpt_deploy.models.summary import count_macs, count_params

    cfg = VARIANTS[row["name"]]
    model = GTPT(cfg).eval()
    assert row["params"] == count_params(model)
    assert row["macs"] == count_macs(model)
    assert row["keypoints"] == cfg.num_keypoints and row["input_size"] == list(cfg.image_size)
    assert row["k_table"] == {k: list(v) for k, v in cfg.k_table.items()}
    assert row["description"] == cfg.description


def test_table_lists_every_registered_variant_in_order():
    from gtpt_deploy.models.gtpt import VARIANTS

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
