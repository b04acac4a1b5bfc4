ATTENTION = config["attention"]
ATTENTION_SHARDS = ATTENTION["shards"]


def attention_file(model, trace):
    """The attention file of one trace of a model."""
    return f"{RESULTS}/attention/{model}/{trace}.npz"


def attention_shard_folder(wildcards):
    """The shard folder that holds the job's trace's attention file."""
    return shard_folder("attention", wildcards.model, wildcards.trace, ATTENTION_SHARDS)


def attention_shard_traces(wildcards):
    """The traces of the job's attention shard."""
    traces = usable_traces(model_rollouts(wildcards.model))
    return shard_traces(traces, wildcards, ATTENTION_SHARDS)


def attention_shard_tokens(wildcards):
    """The token-spans files of the job's attention shard."""
    return expand(
        f"{RESULTS}/tokens/{wildcards.model}/{{trace}}.json",
        trace=attention_shard_traces(wildcards),
    )


def demo_model_params(wildcards):
    """The `demo:` block of a demo model (only demo-source models are built)."""
    model = MODELS[wildcards.model]
    if model["source"] != "demo":
        raise ValueError(
            f"model {wildcards.model!r} has source {model['source']!r}; only demo models are built"
        )
    return model["demo"]


def model_rollouts_param(wildcards):
    """The rollouts folder whose traces a model job reads."""
    return model_rollouts(wildcards.model)


def attention_targets(wildcards):
    """Every usable trace's attention file, for every configured model."""
    return [
        attention_file(model, trace)
        for model in MODELS
        for trace in usable_traces(model_rollouts(model))
    ]
