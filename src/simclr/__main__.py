"""``python -m simclr`` is the ``simclr`` command."""

import sys

from simclr.cli import main

sys.exit(main())
