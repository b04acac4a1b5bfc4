"""Fetch SmolLM2-135M-Instruct for the real-model tier (``anchorflow.models.smollm2``; the same
as the ``anchorflow-fetch-smollm2`` command)."""

from anchorflow.models.smollm2 import main

if __name__ == "__main__":
    main()
