"""``python -m visionattn ...`` (also ``torchrun --nproc-per-node N -m visionattn train ...``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
