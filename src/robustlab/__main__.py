"""`python -m robustlab` runs the command line."""

from robustlab.cli.app import run

run()
