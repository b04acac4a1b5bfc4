ATTENTION = config["attention"]


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
    return per_trace(f"{RESULTS}/attention/{{model}}/{{trace}}.npz", by="model")
