from anchorflow.receivers.reliability import reliability_order

RECEIVERS = config["receivers"]


def model_traces(model):
    """The usable traces of a model's rollouts folder."""
    return usable_traces(model_rollouts(model))


def model_attention_files(wildcards):
    """Every trace's attention file of the job's model."""
    return [
        attention_file(wildcards.model, trace)
        for trace in model_traces(wildcards.model)
    ]


def model_sentence_files(wildcards):
    """Every trace's sentences file of the job's model (its rollouts folder)."""
    return expand(
        f"{RESULTS}/sentences/{model_rollouts(wildcards.model)}/{{trace}}.json",
        trace=model_traces(wildcards.model),
    )


def model_label_files(wildcards):
    """Every trace's labels file of the job's model (its rollouts folder)."""
    return expand(
        f"{RESULTS}/labels/{model_rollouts(wildcards.model)}/{{trace}}.json",
        trace=model_traces(wildcards.model),
    )


def figure_trace(wildcards):
    """The Figure 4 trace: `receivers.figure_trace`, or the first trace in split-half order."""
    traces = model_traces(wildcards.model)
    wanted = RECEIVERS["figure_trace"]
    if wanted is None:
        return reliability_order(traces)[0]
    if wanted not in traces:
        raise ValueError(
            f"receivers.figure_trace {wanted!r} is not a usable trace of model "
            f"{wildcards.model!r} (usable: {', '.join(traces)})"
        )
    return wanted


def figure_trace_attention(wildcards):
    """The attention file of the Figure 4 trace."""
    return attention_file(wildcards.model, figure_trace(wildcards))


def receiver_statistics():
    """The receivers section's parameters the statistics depend on."""
    keys = [
        "proximity_ignore",
        "control_depth",
        "top_k",
        "exclude_layer0",
        "n_bootstrap",
        "seed",
    ]
    return {key: RECEIVERS[key] for key in keys}


def receivers_targets(wildcards):
    """Every final output of the receiver-head stage, for every configured model."""
    tables = [
        "kurtosis.tsv",
        "receiver_heads.tsv",
        "reliability.tsv",
        "receiver_scores.tsv",
        "blackbox/correlations.tsv",
        "blackbox/correlations.md",
    ]
    figures = ["figure4.png", "figure4.pdf", "figure4_data.csv"]
    figures += [
        "whitebox_blackbox.png",
        "whitebox_blackbox.pdf",
        "whitebox_blackbox_data.csv",
    ]
    figures += ["figure5.png", "figure5.pdf", "figure5_data.csv"]
    figures += ["figure5_ttests.tsv", "figure5_ttests.md"]
    return expand(
        f"{RESULTS}/receivers/{{model}}/{{name}}", model=MODELS, name=tables
    ) + expand(f"{RESULTS}/figures/{{model}}/{{name}}", model=MODELS, name=figures)
