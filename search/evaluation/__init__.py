"""What an evaluation is: the losses, the plan of (loss, task, seed) runs, its run folder
and the session that feeds the runs to search.runs. Imports spaces, rl and search.runs."""
