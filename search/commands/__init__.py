"""The command lines of search.py and evaluate.py, and the search presets. May import every
layer; nothing but the entry points imports it."""
