"""The search over auxiliary losses, in layers; a layer imports only the ones above it:

    spaces             the genome language (no torch)
    rl                 SAC + auxiliary loss on DMC; rl.train.train() is its one entry
    search.evolution   ask/tell engine, strategies, operators, planted fitness: plain Python
    search.runs        training jobs as Ray Tune trials: cluster, jobs, tuner, run folder, display
    search.evaluation  what an evaluation runs (losses, plan) and its run folder
    search.report      tables and figures from run folders (pandas, matplotlib; no Ray)
    search.commands    search.py and evaluate.py

tests/test_layers.py reads every import statement and holds the tree to this order.
"""
