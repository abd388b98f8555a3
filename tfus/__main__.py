"""``python -m tfus``: the tfus command line."""

import sys

from tfus import main

sys.exit(main())
