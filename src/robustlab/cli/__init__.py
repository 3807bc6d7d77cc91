"""The `robustlab` command line (typer)."""
