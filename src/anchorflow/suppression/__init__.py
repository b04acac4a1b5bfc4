"""Stage 6, suppression: the masked attention, the KL between baseline and suppressed
distributions, and the sentence-to-sentence KL matrix (Figure 6)."""
