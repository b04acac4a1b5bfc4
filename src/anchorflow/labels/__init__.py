"""Stage 3, sentence taxonomy labels: the dataset's own, or Claude's (cached, retried, batched).

Submodules: ``dataset`` (the dataset's labels), ``prompt`` (request and response validation),
``client`` (transport), ``cache``, ``labeller`` (windows, re-asks, the rule entry point),
``usage`` (token usage), ``batch`` (Message Batches), ``agreement``. The tags themselves are
:mod:`anchorflow.taxonomy`, shared with the data and plotting modules.
"""
