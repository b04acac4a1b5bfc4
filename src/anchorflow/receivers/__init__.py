"""Stage 5, receiver heads: per-trace head statistics (kurtosis, top-k, receiver scores), their
reliability across traces (Figure 4), scores by sentence category (Figure 5)."""
