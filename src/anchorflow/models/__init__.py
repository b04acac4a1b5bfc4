"""Model loading (hub, local folder, GGUF, the demo), the tiny test models, the demo model with
its planted receiver head, and the SmolLM2 files of the real-model tier."""
