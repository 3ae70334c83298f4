from tfgate.cli import run

raise SystemExit(run())
