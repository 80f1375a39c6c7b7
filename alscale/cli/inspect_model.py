"""``alscale inspect-model``: show a model's inputs, outputs and the contract alscale sees."""

from __future__ import annotations

import json

import click

__all__ = ["command"]


@click.command("inspect-model")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--probs-output", default=None, help="Name of the probability/logit output. [default: detected]")
@click.option("--embedding-output", default=None, help="Name of the embedding output. [default: detected]")
@click.option("--json", "as_json", is_flag=True, help="Print the contract as JSON.")
def command(model, probs_output, embedding_output, as_json):
    """Show MODEL's inputs and outputs and how alscale will use them.

    Reports the input (name, width), the class output (probabilities or logits, number of
    classes and their names), the embedding output used by badge/coreset/cluster-margin, and
    every raw output.  Fails with a one-line error if the model breaks the contract.
    """
    from alscale.model.contract import inspect_model

    contract = inspect_model(model, probs_output=probs_output, embedding_output=embedding_output)
    if as_json:
        data = contract.to_dict()
        data["outputs"] = [{"name": n, "type": t, "shape": [str(d) for d in s]} for n, t, s in contract.outputs]
        click.echo(json.dumps(data, indent=2))
        return
    classes = ", ".join(contract.classes[:12]) + (" ..." if len(contract.classes) > 12 else "")
    click.echo(f"model      {contract.path}")
    click.echo(f"sha256     {contract.sha256}")
    click.echo(f"input      {contract.input_name} {contract.input_type} width={contract.input_width or 'any'}")
    click.echo(f"classes    {contract.n_classes} from {contract.class_output!r} ({contract.output_kind}): {classes}")
    if contract.embedding_output:
        click.echo(f"embedding  {contract.embedding_output!r} width={contract.embedding_dim}  (badge, coreset, cluster-margin ready)")
    else:
        click.echo("embedding  none  (uncertainty and committee strategies only)")
    click.echo("outputs")
    for name, typ, shape in contract.outputs:
        click.echo(f"  {name:<24} {typ:<20} {list(shape)}")
