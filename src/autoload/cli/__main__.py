"""`python -m autoload.cli ARGS`, the same as `autoload ARGS`."""

import sys

from . import main

sys.exit(main())
