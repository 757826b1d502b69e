"""Evolutionary search over auxiliary losses (A2LS). See search/cli.py, or --help."""
from search.commands.search_cli import main

raise SystemExit(main())
