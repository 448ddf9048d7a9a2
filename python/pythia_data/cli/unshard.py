"""`pythia-data unshard` (placeholder until implemented)."""

import click


@click.command("unshard")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
