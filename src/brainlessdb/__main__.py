"""``python -m brainlessdb``: the same as the ``brainless`` command."""

import sys

from brainlessdb.cli import main

sys.exit(main())
