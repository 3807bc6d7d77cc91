"""Regenerate the paper sections of benchmarks/README.md from the runs' tables.json (one source).

    python scripts/paper_sections.py            # rewrite the <!-- paper-section NAME --> blocks
    python scripts/paper_sections.py --check    # exit 1 when a block differs from its tables.json

Each block is rendered from experiments/reports/NAME/tables.json (copy it there from the run
directory beside tables.md). Blocks without a tables.json are left as they are and listed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robustlab.core.errors import RobustlabError
from robustlab.core.files import publish
from robustlab.report.paper_readme import regenerate

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md")
    parser.add_argument("--reports", type=Path, default=ROOT / "experiments" / "reports")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    try:
        text = args.readme.read_text()
        new, missing = regenerate(text, args.reports)
    except (OSError, RobustlabError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in missing:
        print(f"{name}: no {args.reports / name / 'tables.json'}; block left as it is", file=sys.stderr)
    if args.check:
        if new != text:
            print(f"{args.readme}: paper sections differ from their tables.json; run scripts/paper_sections.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        publish({args.readme: new.encode()})
        print(f"{args.readme}: paper sections regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
