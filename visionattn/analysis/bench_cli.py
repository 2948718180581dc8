"""`visionattn bench` (placeholder: being written)."""


def add_parser(sub) -> None:
    """Register the ``bench`` subcommand on an argparse sub-parser collection."""
