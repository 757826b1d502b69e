"""The genome language of auxiliary losses (no torch)."""
from spaces.genome import KINDS, MAX_HORIZON, METRICS, MIN_HORIZON, Genome, GenomeError, make
from spaces.metrics import positions, similarity, space_size
from spaces.named import NAMED_LOSSES, named
from spaces.patterns import PATTERNS, patterns
from spaces.rejection import build_error, reject_reason

__all__ = ["KINDS", "MAX_HORIZON", "METRICS", "MIN_HORIZON", "Genome", "GenomeError", "make",
           "positions", "similarity", "space_size", "NAMED_LOSSES", "named", "PATTERNS",
           "patterns", "build_error", "reject_reason"]
