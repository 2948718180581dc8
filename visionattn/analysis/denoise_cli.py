"""`visionattn denoise` (placeholder: being written)."""


def add_parser(sub) -> None:
    """Register the ``denoise`` subcommand on an argparse sub-parser collection."""
