"""The trace explorer: static, self-contained HTML pages of a run."""
