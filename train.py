"""Train one agent: every flag of the released A2LS train.py (see README)."""
from rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
