"""Training runs on Ray: joining or embedding a cluster, jobs as Ray Tune trials, the search
session and its run folder, the progress display. Imports spaces, rl and search.evolution."""
