"""`visionattn viz` (placeholder: being written)."""


def add_parser(sub) -> None:
    """Register the ``viz`` subcommand on an argparse sub-parser collection."""
