"""The convergence study: a grid of configurations trained over many seeds, summarised."""
