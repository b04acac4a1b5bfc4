"""Stage 1, the inputs: math-rollouts traces (tree or parquet, local or on the hub) into
normalised records, the embedded demo dataset, and the problem sets of the interventions."""
