from anchorflow.labels.client import check_api_key
from anchorflow.labels.prompt import PROMPT_VERSION

LABELS = config["labels"]


def label_uses_api():
    """Whether any labelling job calls the Anthropic API (source anthropic or agreement)."""
    return LABELS["source"] == "anthropic" or LABELS["agreement"]


def label_settings(source):
    """Labelling parameters of a source. Transport settings (retries, waits, deadlines, polling,
    cache_dir) cannot change a label: scripts read them from the config, so they rerun nothing.
    """
    if source == "dataset":
        return {"source": "dataset"}
    keys = ["model", "max_tokens", "temperature", "window_chunks", "context_chunks"]
    keys += ["max_reasks", "on_invalid"]
    settings = {key: LABELS[key] for key in keys}
    return {"source": "anthropic", "prompt_version": PROMPT_VERSION, **settings}


def label_params_configured(wildcards):
    return label_settings(LABELS["source"])


def label_params_anthropic(wildcards):
    return label_settings("anthropic")


def label_api_slots(wildcards):
    """`llm_api` resource of a configured-source labelling job: 1 when it may call the API."""
    return int(LABELS["source"] == "anthropic")


def batch_summary(wildcards):
    return f"{RESULTS}/labels/{wildcards.rollouts}/batch.json"


# The batch summary an API labelling job waits for (batch mode only); for the configured-source
# job, only when that source is the API.
label_batch_marker = branch(LABELS["batch"], then=batch_summary)
label_batch_marker_configured = branch(
    LABELS["batch"] and LABELS["source"] == "anthropic", then=batch_summary
)


def anthropic_label_pattern():
    """Where the Claude labels of a trace live: the main file or the agreement copy."""
    if LABELS["source"] == "anthropic":
        return f"{RESULTS}/labels/{{rollouts}}/{{trace}}.json"
    return f"{RESULTS}/labels/{{rollouts}}/anthropic/{{trace}}.json"


def anthropic_label_files(wildcards):
    return expand(
        anthropic_label_pattern(),
        rollouts=wildcards.rollouts,
        trace=usable_traces(wildcards.rollouts),
    )


def label_targets(wildcards):
    """Every final output of the labelling stage."""
    targets = per_trace(f"{RESULTS}/labels/{{rollouts}}/{{trace}}.json")
    if label_uses_api():
        targets += expand(
            f"{RESULTS}/labels/{{rollouts}}/usage.tsv", rollouts=rollouts_folders()
        )
    if LABELS["agreement"]:
        targets += expand(
            f"{RESULTS}/labels/{{rollouts}}/agreement/{{name}}",
            rollouts=rollouts_folders(),
            name=["confusion.png", "confusion.pdf", "per_category.tsv", "kappa.json"],
        )
    return targets
