"""`python -m crawler` runs the command line."""

import sys

from crawler.app.cli import main

sys.exit(main())
