"""Evaluate auxiliary losses against SAC and CURL over tasks and seeds (search/commands/evaluate_cli.py)."""
from search.commands.evaluate_cli import main

if __name__ == "__main__":
    raise SystemExit(main())
