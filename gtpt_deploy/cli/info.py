"""``gtpt-deploy models``: the registry of GTPT variants."""

from __future__ import annotations


import click

from .main import echo_json, main


@main.command("models")
@click.option("--json", "as_json", is_flag=True, help='Print one JSON object {"models": [...]} instead of a table.')
def models_cmd(as_json: bool) -> None:
    """List the GTPT variants with keypoints, input size, parameters and GMACs.

    \b
    Parameters count the inference (EMA) branch; MACs are counted by torch's FLOP counter on one 256x192 crop,
    attention matmuls included (counted once and stored: the table needs no torch).
    Examples:
      gtpt-deploy models
      gtpt-deploy models --json | jq '.models[0]'
    """
    from ..models.variants import variant_rows

    rows = variant_rows()
    if as_json:
        echo_json({"models": rows})  # one object, as every --json of the CLI
        return
    header = f"{'name':<18} {'keypoints':>9} {'input (HxW)':>11} {'params (M)':>10} {'GMACs':>7}  description"
    click.echo(header)
    click.echo("-" * len(header))
    for r in rows:
        click.echo(f"{r['name']:<18} {r['keypoints']:>9} {r['input_size'][0]:>5}x{r['input_size'][1]:<5} "
                   f"{r['params_m']:>10.3f} {r['gmacs']:>7.3f}  {r['description']}")
