"""`visionattn experiment` (placeholder: being written)."""


def add_parser(sub) -> None:
    """Register the ``experiment`` subcommand on an argparse sub-parser collection."""
