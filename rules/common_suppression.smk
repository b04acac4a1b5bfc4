SUPPRESSION = config["suppression"]
SUPPRESSION_SHARDS = SUPPRESSION["shards"]


def suppression_file(model, trace):
    """The suppression matrix file of one trace of a model."""
    return f"{RESULTS}/suppression/{model}/{trace}.npz"


def suppression_shard_folder(wildcards):
    """The shard folder that holds the job's trace's suppression matrix."""
    return shard_folder(
        "suppression", wildcards.model, wildcards.trace, SUPPRESSION_SHARDS
    )


def suppression_traces(model):
    """The traces of a model whose suppression matrix is computed (`suppression.traces`)."""
    usable = usable_traces(model_rollouts(model))
    wanted = SUPPRESSION["traces"]
    if wanted == "all":
        return usable
    missing = [trace for trace in wanted if trace not in usable]
    if missing:
        raise ValueError(
            f"suppression.traces {missing} are not usable traces of model {model!r} "
            f"(usable: {', '.join(usable)})"
        )
    return list(wanted)


def suppression_settings():
    """The suppression parameters a matrix depends on."""
    keys = [
        "kl_mode",
        "temperature",
        "top_p",
        "max_k",
        "batch_size",
        "query_block",
        "heads",
        "max_tokens",
    ]
    return {key: SUPPRESSION[key] for key in keys}


# The receiver-heads table, when only the receiver heads are suppressed.
suppression_receiver_heads = branch(
    SUPPRESSION["heads"] == "receivers", then=receiver_heads_table
)


def suppression_matrix_files(wildcards):
    """Every suppression matrix of the job's model."""
    return [
        suppression_file(wildcards.model, trace)
        for trace in suppression_traces(wildcards.model)
    ]


def suppression_shard_traces(wildcards):
    """The traces of the job's suppression shard."""
    return shard_traces(
        suppression_traces(wildcards.model), wildcards, SUPPRESSION_SHARDS
    )


def suppression_shard_tokens(wildcards):
    """The token-spans files of the job's suppression shard."""
    return expand(
        f"{RESULTS}/tokens/{wildcards.model}/{{trace}}.json",
        trace=suppression_shard_traces(wildcards),
    )


def suppression_token_files(wildcards):
    """The token-spans files of the job's model's suppression traces."""
    return expand(
        f"{RESULTS}/tokens/{wildcards.model}/{{trace}}.json",
        trace=suppression_traces(wildcards.model),
    )


def suppression_traces_param(wildcards):
    """The suppression traces of the job's model, in input order."""
    return suppression_traces(wildcards.model)


def suppression_label_files(wildcards):
    """The labels files of the job's model's suppression traces."""
    return expand(
        f"{RESULTS}/labels/{model_rollouts(wildcards.model)}/{{trace}}.json",
        trace=suppression_traces(wildcards.model),
    )


def figure6_trace(wildcards):
    """The Figure 6 trace: `suppression.figure_trace`, or the first computed trace."""
    traces = suppression_traces(wildcards.model)
    wanted = SUPPRESSION["figure_trace"]
    if wanted is None:
        return traces[0]
    if wanted not in traces:
        raise ValueError(
            f"suppression.figure_trace {wanted!r} is not among the suppression traces of "
            f"model {wildcards.model!r} ({', '.join(traces)})"
        )
    return wanted


def figure6_matrix_file(wildcards):
    """The suppression matrix of the Figure 6 trace."""
    return suppression_file(wildcards.model, figure6_trace(wildcards))


def suppression_targets(wildcards):
    """Every final output of the suppression stage, for every configured model."""
    names = ["figure6.png", "figure6.pdf", "figure6_data.csv"]
    names += [
        "suppression_grid.png",
        "suppression_grid.pdf",
        "suppression_grid_data.csv",
    ]
    names += [
        "suppression_link.png",
        "suppression_link.pdf",
        "suppression_link_data.csv",
    ]
    tables = ["importance.tsv", "correlations.tsv"]
    if SUPPRESSION["receiver_variant"]:
        tables.append("receiver_heads_final_kl.tsv")
    return expand(
        f"{RESULTS}/figures/{{model}}/{{name}}", model=MODELS, name=names
    ) + expand(f"{RESULTS}/suppression/{{model}}/{{name}}", model=MODELS, name=tables)
