"""`pythia-data info` (placeholder until implemented)."""

import click


@click.command("info")
def command() -> None:
    """Not implemented yet."""
    raise click.ClickException("not implemented yet")
