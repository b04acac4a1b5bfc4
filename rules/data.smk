checkpoint acquire_rollouts:
    output:
        records=f"{RESULTS}/rollouts/records.jsonl",
        manifest=f"{RESULTS}/rollouts/manifest.tsv",
        excluded=f"{RESULTS}/rollouts/excluded.tsv",
    log:
        main=f"{RESULTS}/logs/acquire_rollouts.log",
        excluded=f"{RESULTS}/logs/acquire_rollouts.excluded.tsv",
    cache: "omit-software"
    # Never retried by Snakemake (this also overrides a profile's `retries`): the hub client
    # retries transient faults itself, and the errors that reach the job (a wrong repository or
    # revision, offline without a cache, dataset.strict) cannot succeed on a second try.
    retries: 0
    localrule: True
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=resource("data", "mem_mb"),
        runtime=resource("data", "runtime"),
    params:
        source=config["dataset"]["source"],
        format=config["dataset"]["format"],
        sampling_folder=config["dataset"]["sampling_folder"],
        strict=config["dataset"]["strict"],
        rollouts=rollouts_folders(),
        problems=config["problems"],
        correctness=config["correctness"],
        source_fingerprint=dataset_fingerprint(),
        code=code_digest(
            "data.rollouts",
            "data.sources",
            "data.hub",
            "hub",
            "sentences",
            "io",
            "taxonomy",
        ),
    script:
        "../scripts/acquire_rollouts.py"


rule prefetch_model:
    output:
        f"{RESULTS}/prefetch/{{model}}.json",
    log:
        f"{RESULTS}/logs/prefetch_model/{{model}}.log",
    retries: 0
    # The login node's job on a cluster: compute nodes then load from the hub cache offline.
    localrule: True
    conda:
        "../envs/model.yaml"
    resources:
        mem_mb=resource("data", "mem_mb"),
        runtime=resource("data", "runtime"),
    params:
        model=model_params,
    script:
        "../scripts/prefetch_model.py"


# Everything that needs the network (the dataset files and the hub models), for a login node:
# `snakemake prefetch`, then run the rest with HF_HUB_OFFLINE=1 (docs/CLUSTER.md).
rule prefetch:
    input:
        rules.acquire_rollouts.output.records,
        expand(f"{RESULTS}/prefetch/{{model}}.json", model=hub_models()),
    localrule: True


rule split_sentences:
    input:
        records=rules.acquire_rollouts.output.records,
    output:
        f"{RESULTS}/sentences/{{rollouts}}/{{trace}}.json",
    log:
        f"{RESULTS}/logs/split_sentences/{{rollouts}}/{{trace}}.log",
    group:
        "sentences"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=resource("data", "mem_mb"),
        runtime=resource("data", "runtime"),
    params:
        variant=config["sentences"]["whitebox_variant"],
    script:
        "../scripts/split_sentences.py"


rule token_spans:
    input:
        sentences=model_trace_sentences,
        records=rules.acquire_rollouts.output.records,
        model=model_files,
    output:
        f"{RESULTS}/tokens/{{model}}/{{trace}}.json",
    log:
        f"{RESULTS}/logs/token_spans/{{model}}/{{trace}}.log",
    group:
        "sentences"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=resource("data", "mem_mb"),
        runtime=resource("data", "runtime"),
    params:
        model=model_params,
        rule=config["sentences"]["token_rule"],
    script:
        "../scripts/token_spans.py"


rule data_all:
    input:
        all_sentence_files,
        all_token_files,
        rules.acquire_rollouts.output.excluded,
