from anchorflow.interventions.attention_conditions import (
    ATTENTION_EXPERIMENTS,
    SENTENCE_EXPERIMENTS,
)
from anchorflow.interventions.conditions import (
    EXPERIMENTS,
    condition_groups,
    condition_names,
)

INTERVENTIONS = config["interventions"]
INTERVENTION_MODEL = INTERVENTIONS["model"] or config["models"][0]["name"]
INTERVENTION_CONDITIONS = condition_names(INTERVENTIONS)
# Accuracy experiments: scored per generation and compared with their random controls.
ACCURACY_EXPERIMENTS = ("amplification", "ablation", "patching", *ATTENTION_EXPERIMENTS)
# Experiments on the problems of problems.json (the others prompt with the acquired traces).
PROBLEM_EXPERIMENTS = ("amplification", "ablation", "dynamic_amplification")


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    group=r"\d+",
    shard=r"\d+",


def intervention_rollouts(wildcards):
    """The rollouts folder of the intervention model (reference traces, counterfactual traces)."""
    return model_rollouts(wildcards.model)


def intervention_problem_source(wildcards):
    """The problem source's file (and the model, when candidates are sampled at baseline)."""
    section = INTERVENTIONS["problems"]
    inputs = {
        "generated": {"generated": section["path"]},
        "selected": {"selected": "resources/selected_problems.json"},
        "records": {"records": rules.acquire_rollouts.output.records},
        "hub": {},
    }[section["source"]]
    if section["selection_samples"]:
        inputs["model"] = model_files(wildcards)
    return inputs


def problem_selection_gpu(wildcards):
    """GPUs of the problem-selection job: the generation jobs' when it samples, else none."""
    return (
        resource("interventions", "gpu")
        if INTERVENTIONS["problems"]["selection_samples"]
        else 0
    )


def intervention_problems_input(wildcards):
    """The chosen problems, for the experiments that sample them (not the trace experiments)."""
    if wildcards.experiment in PROBLEM_EXPERIMENTS:
        return {
            "problems": f"{RESULTS}/interventions/{wildcards.model}/problems/problems.json"
        }
    return {}


def uses_mean_op(wildcards):
    """Whether the job's experiment ablates heads to their mean output."""
    return INTERVENTIONS.get(wildcards.experiment, {}).get("op") == "mean"


def head_means_input(wildcards):
    return {"head_means": f"{RESULTS}/interventions/{wildcards.model}/head_means.npz"}


# The head-means file, for experiments whose op is mean.
intervention_means_input = branch(uses_mean_op, then=head_means_input, otherwise={})


DECODING_KEYS = (
    "prompt_format",
    "instruction",
    "temperature",
    "top_p",
    "max_new_tokens",
    "batch_size",
    "seed",
    "paired_seeds",
)


def intervention_problem_params(wildcards):
    """What the problem choice depends on: the problems section, decoding and the extractor."""
    return {
        **{key: INTERVENTIONS[key] for key in DECODING_KEYS},
        "extractor": INTERVENTIONS["extractor"],
        "problems": INTERVENTIONS["problems"],
    }


def intervention_generation_params(wildcards):
    """Everything a generation job depends on (its experiment's section and the decoding)."""
    return {
        **{key: INTERVENTIONS[key] for key in DECODING_KEYS},
        "conditions_per_job": INTERVENTIONS["conditions_per_job"],
        "problems": INTERVENTIONS["problems"],
        "experiment": INTERVENTIONS[wildcards.experiment],
    }


# The ranked receiver heads of the intervention model (unless heads are given in config).
intervention_receiver_heads = branch(
    lookup(dpath="receiver_heads/heads", within=INTERVENTIONS),
    otherwise=receiver_heads_table,
)


def intervention_shards(wildcards):
    """Every generation file of one experiment: each group of conditions times each shard."""
    groups = condition_groups(
        INTERVENTION_CONDITIONS[wildcards.experiment],
        INTERVENTIONS["conditions_per_job"],
    )
    return expand(
        f"{RESULTS}/interventions/{{model}}/{{experiment}}/generations/{{group}}/{{shard}}.json",
        model=wildcards.model,
        experiment=wildcards.experiment,
        group=range(len(groups)),
        shard=range(INTERVENTIONS[wildcards.experiment]["shards"]),
    )


def patching_inputs(wildcards):
    """The per-sentence receiver scores and the records, which the patching conditions need."""
    return {
        "scores": f"{RESULTS}/receivers/{wildcards.model}/receiver_scores.tsv",
        "records": rules.acquire_rollouts.output.records,
    }


def chooses_sentences(wildcards):
    """Whether an enabled experiment picks anchor and control sentences."""
    return any(
        INTERVENTIONS[experiment]["enabled"]
        for experiment in ("patching", *SENTENCE_EXPERIMENTS)
    )


# The sentence experiments pick their sentences from the receivers stage's scores.
intervention_patching_inputs = branch(
    chooses_sentences, then=patching_inputs, otherwise={}
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
    tables = [
        f"{out}/{{experiment}}/failure_modes.tsv",
        f"{out}/{{experiment}}/strata.tsv",
    ]
    targets = {
        "amplification": [
            f"{out}/amplification/amplification.tsv",
            f"{out}/amplification/amplification.png",
        ],
        "ablation": [f"{out}/ablation/ablation.tsv", f"{out}/ablation/ablation.png"],
        "counterfactual": [
            f"{out}/counterfactual/by_category.tsv",
            f"{out}/counterfactual/by_category.png",
            f"{out}/counterfactual/controls.tsv",
            f"{out}/counterfactual/by_category_box.png",
            f"{out}/counterfactual/similarity_by_category.tsv",
            f"{out}/counterfactual/change_by_category.tsv",
            f"{out}/counterfactual/top_changes.tsv",
            f"{out}/counterfactual/dropdown_growth.tsv",
        ],
        "patching": [f"{out}/patching/patching.tsv", f"{out}/patching/patching.png"],
    }
    for experiment in ATTENTION_EXPERIMENTS:
        targets[experiment] = [
            f"{out}/{experiment}/{experiment}.tsv",
            f"{out}/{experiment}/{experiment}.png",
        ]
    uses_means = any(
        INTERVENTIONS[experiment].get("op") == "mean"
        for experiment in INTERVENTION_CONDITIONS
    )
    paths = [f"{out}/head_means.npz"] if uses_means else []
    if set(PROBLEM_EXPERIMENTS) & set(INTERVENTION_CONDITIONS):
        paths.append(f"{out}/problems/selection.tsv")
    for experiment in INTERVENTION_CONDITIONS:
        paths += targets[experiment]
        if experiment in ACCURACY_EXPERIMENTS:
            paths += expand(tables, experiment=experiment)
    return paths
