"""`pythia-data merge` (placeholder until implemented)."""

import click


@click.command("merge")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
