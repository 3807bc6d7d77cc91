"""`python -m robustlab` runs the command line."""

import sys

from robustlab.cli.app import main

sys.exit(main())
