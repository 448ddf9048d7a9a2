"""`pythia-data verify` (placeholder until implemented)."""

import click


@click.command("verify")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
