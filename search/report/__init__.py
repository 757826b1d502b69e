"""Reports: read search and evaluation run folders, write tables, statistics and figures.
Imports spaces, rl, search.evolution, search.runs and search.evaluation for their formats;
never starts Ray."""
