"""Sentence taxonomy labels: the dataset's own, or Claude's (cached, retried, batched)."""

from anchorflow.labels.dataset import LabelError, dataset_label_document, labelled_chunks
from anchorflow.labels.labeller import label_trace_file
from anchorflow.labels.prompt import PROMPT_VERSION
from anchorflow.labels.taxonomy import CATEGORIES, TAGS

__all__ = [
    "CATEGORIES",
    "PROMPT_VERSION",
    "TAGS",
    "LabelError",
    "dataset_label_document",
    "label_trace_file",
    "labelled_chunks",
]
