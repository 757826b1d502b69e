"""Evolutionary search over auxiliary losses (A2LS). See search/commands/search_cli.py, or --help."""
from search.commands.search_cli import main

raise SystemExit(main())
