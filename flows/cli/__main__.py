import sys

from tfus.flows.cli import main

sys.exit(main())
