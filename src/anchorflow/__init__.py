"""anchorflow: reproducible white-box analyses of Thought Anchors."""
