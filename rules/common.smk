from anchorflow.config import validate_config
from anchorflow.data.rollouts import requested_traces, source_fingerprint
from anchorflow.shards import shard_members, shard_of
from anchorflow.workflow import code_digest

validate_config(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")

RESULTS = f"results/{config['run']}"
MODELS = {model["name"]: model for model in config["models"]}


wildcard_constraints:
    trace=r"\d+_(correct|incorrect)",
    rollouts=r"[A-Za-z0-9._-]+",
    model=r"[A-Za-z0-9._-]+",


def resource(family, key):
    """A resource value of a rule family from config, falling back to `default`."""
    families = config["resources"]
    return families.get(family, {}).get(key, families["default"][key])


def rollouts_folders():
    """The dataset model folders the configured models read their traces from."""
    return sorted({model["rollouts"] for model in config["models"]})


def dataset_fingerprint():
    """Digest of the local dataset files the run reads (the URL alone for remote sources)."""
    dataset = config["dataset"]
    requests = requested_traces(
        rollouts_folders(), config["problems"], config["correctness"]
    )
    return source_fingerprint(
        dataset["source"], requests, dataset["sampling_folder"], dataset["format"]
    )


def model_rollouts(model):
    """The rollouts folder of a configured model."""
    return MODELS[model]["rollouts"]


def usable_traces(rollouts):
    """Traces of a rollouts folder that passed acquisition (read after the checkpoint)."""
    records = checkpoints.acquire_rollouts.get().output.manifest
    with open(records, encoding="utf-8") as stream:
        rows = [line.rstrip("\n").split("\t") for line in stream][1:]
    return [trace for folder, trace in rows if folder == rollouts]


def model_files(wildcards):
    """The input of the model jobs: a demo model's built folder, a hub model's pre-fetch
    record (its files are then in the hub cache), nothing for local folders and GGUF files.
    """
    source = MODELS[wildcards.model]["source"]
    if source == "demo":
        return f"{RESULTS}/models/{wildcards.model}"
    if source == "hub":
        return f"{RESULTS}/prefetch/{wildcards.model}.json"
    return []


def hub_models():
    """The configured models that come from the hub."""
    return [name for name, spec in MODELS.items() if spec["source"] == "hub"]


def receiver_heads_table(wildcards):
    """The ranked receiver heads of the job's model."""
    return f"{RESULTS}/receivers/{wildcards.model}/receiver_heads.tsv"


def model_spec(model):
    """The loading spec of a model, as JSON-able params."""
    spec = dict(MODELS[model])
    if spec["source"] == "demo":
        spec["path"] = f"{RESULTS}/models/{model}"
    return spec


def per_trace(pattern, by="rollouts"):
    """Expand `pattern` over every usable trace of every rollouts folder or model."""
    paths = []
    if by == "rollouts":
        for folder in rollouts_folders():
            paths += expand(pattern, rollouts=folder, trace=usable_traces(folder))
    else:
        for model in MODELS:
            paths += expand(
                pattern, model=model, trace=usable_traces(model_rollouts(model))
            )
    return paths


def model_params(wildcards):
    """Loading spec of the job's model (params of model rules)."""
    return model_spec(wildcards.model)


def model_trace_sentences(wildcards):
    """The sentences file of a model job's trace."""
    return (
        f"{RESULTS}/sentences/{model_rollouts(wildcards.model)}/{wildcards.trace}.json"
    )


def shard_folder(stage, model, trace, n_shards):
    """The folder of the shard holding a trace's result in a sharded model stage."""
    return f"{RESULTS}/{stage}/{model}/shards/{shard_of(trace, n_shards)}"


def shard_traces(traces, wildcards, n_shards):
    """The traces of the job's shard, in their given order."""
    return shard_members(traces, int(wildcards.shard), n_shards)


def all_sentence_files(wildcards):
    return per_trace(f"{RESULTS}/sentences/{{rollouts}}/{{trace}}.json")


def all_token_files(wildcards):
    return per_trace(f"{RESULTS}/tokens/{{model}}/{{trace}}.json", by="model")
