"""Sentence taxonomy labels: the dataset's own, or Claude's (cached, retried, batched).

Submodules: ``taxonomy`` (tags and categories), ``dataset`` (the dataset's labels), ``prompt``
(request and response validation), ``client`` (transport), ``cache``, ``labeller`` (windows,
re-asks, the rule entry point), ``batch`` (Message Batches), ``agreement``. This package module
imports none of them, so ``anchorflow.rollouts`` can use the taxonomy without a cycle.
"""
