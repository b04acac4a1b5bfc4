"""Stage 7, interventions: per-head hooks, residual patching, conditions with matched random
controls, batched generation, scoring, accuracy tables, counterfactual importance and checks."""
