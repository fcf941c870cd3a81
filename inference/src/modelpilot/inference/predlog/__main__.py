"""`python -m modelpilot.inference.predlog migrate`: bring the log's schema up to date (a Job or init step).

The DSN comes from `MODELPILOT_PREDLOG_DSN` (a Secret) or `--dsn`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from modelpilot.inference.logs import configure_logging
from modelpilot.inference.predlog.migrate import current_revision, migrate

log = logging.getLogger("modelpilot.inference.predlog")


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m modelpilot.inference.predlog")
    parser.add_argument("command", choices=["migrate", "revision"], help="migrate: upgrade to the newest schema")
    parser.add_argument("--dsn", default=os.environ.get("MODELPILOT_PREDLOG_DSN", ""), help=argparse.SUPPRESS)
    parser.add_argument("--revision", default="head", help="schema revision to migrate to (default: head)")
    args = parser.parse_args(argv)
    configure_logging()
    if not args.dsn:
        log.error("no database: set MODELPILOT_PREDLOG_DSN")
        return 2
    if args.command == "migrate":
        migrate(args.dsn, args.revision)
    log.info("prediction log schema", extra={"fields": {"revision": current_revision(args.dsn)}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
