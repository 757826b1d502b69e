"""The evolution: an ask/tell engine over genomes, its strategies and variation operators,
and the planted benchmark. Plain Python: imports spaces only (never Ray, torch or rl)."""
