"""`python -m crawler` runs the command line."""

import sys

from crawler.cli import main

sys.exit(main())
