from anchorflow.interventions import EXPERIMENTS, condition_names

INTERVENTIONS = config["interventions"]
INTERVENTION_MODEL = INTERVENTIONS["model"] or config["models"][0]["name"]
INTERVENTION_CONDITIONS = condition_names(INTERVENTIONS)


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    condition=r"[A-Za-z0-9._-]+",
    shard=r"\d+",


def intervention_rollouts(wildcards):
    """The rollouts folder of the intervention model (reference traces, counterfactual traces)."""
    return model_rollouts(wildcards.model)


def selected_problems_input(wildcards):
    return {"selected": "resources/selected_problems.json"}


# Where the accuracy experiments' problems come from (records or the selected list).
intervention_problem_inputs = branch(
    lookup(dpath="problems/source", within=INTERVENTIONS) == "selected",
    then=selected_problems_input,
    otherwise={},
)


def uses_mean_op(wildcards):
    """Whether the job's experiment ablates heads to their mean output."""
    return INTERVENTIONS.get(wildcards.experiment, {}).get("op") == "mean"


def head_means_input(wildcards):
    return {"head_means": f"{RESULTS}/interventions/{wildcards.model}/head_means.npz"}


# The head-means file, for experiments whose op is mean.
intervention_means_input = branch(uses_mean_op, then=head_means_input, otherwise={})


def intervention_generation_params(wildcards):
    """Everything a generation job depends on (its experiment's section and the decoding)."""
    keys = (
        "prompt_format",
        "temperature",
        "top_p",
        "max_new_tokens",
        "batch_size",
        "seed",
        "paired_seeds",
    )
    shared = {key: INTERVENTIONS[key] for key in keys}
    return {
        **shared,
        "problems": INTERVENTIONS["problems"],
        "experiment": INTERVENTIONS[wildcards.experiment],
    }


# The ranked receiver heads of the intervention model (unless heads are given in config).
intervention_receiver_heads = branch(
    lookup(dpath="receiver_heads/heads", within=INTERVENTIONS),
    otherwise=receiver_heads_table,
)


def intervention_shards(wildcards):
    """Every generation shard of one experiment, over all its conditions."""
    settings = INTERVENTIONS[wildcards.experiment]
    return expand(
        f"{RESULTS}/interventions/{{model}}/{{experiment}}/generations/{{condition}}/{{shard}}.json",
        model=wildcards.model,
        experiment=wildcards.experiment,
        condition=INTERVENTION_CONDITIONS[wildcards.experiment],
        shard=range(settings["shards"]),
    )


def intervention_counterfactual_params(wildcards):
    """The counterfactual section plus the shared scoring settings."""
    return {
        **INTERVENTIONS["counterfactual"],
        "extractor": INTERVENTIONS["extractor"],
        "rollouts": model_rollouts(wildcards.model),
    }


def interventions_targets(wildcards):
    """The final tables and figures of every enabled experiment."""
    out = f"{RESULTS}/interventions/{INTERVENTION_MODEL}"
    targets = {
        "amplification": [
            f"{out}/amplification/amplification.tsv",
            f"{out}/amplification/amplification.png",
        ],
        "ablation": [f"{out}/ablation/ablation.tsv", f"{out}/ablation/ablation.png"],
        "counterfactual": [
            f"{out}/counterfactual/by_category.tsv",
            f"{out}/counterfactual/by_category.png",
        ],
    }
    paths = [f"{out}/head_means.npz"]
    for experiment in INTERVENTION_CONDITIONS:
        paths += targets[experiment]
    return paths
