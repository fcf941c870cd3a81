"""`python -m modelpilot.kubectl …` runs the plugin."""

from modelpilot.kubectl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
