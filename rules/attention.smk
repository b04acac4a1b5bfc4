rule build_demo_model:
    input:
        records=rules.acquire_rollouts.output.records,
    output:
        directory(f"{RESULTS}/models/{{model}}"),
    log:
        f"{RESULTS}/logs/build_demo_model/{{model}}.log",
    conda:
        "../envs/model.yaml"
    threads: resource("attention", "threads")
    resources:
        mem_mb=resource("attention", "mem_mb"),
        runtime=resource("attention", "runtime"),
    params:
        demo=demo_model_params,
        rollouts=model_rollouts_param,
    script:
        "../scripts/build_demo_model.py"


rule sentence_attention:
    input:
        tokens=attention_shard_tokens,
        records=rules.acquire_rollouts.output.records,
        model=model_files,
    output:
        directory(f"{RESULTS}/attention/{{model}}/shards/{{shard}}"),
    log:
        f"{RESULTS}/logs/sentence_attention/{{model}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/sentence_attention/{{model}}/{{shard}}.tsv"
    conda:
        "../envs/model.yaml"
    threads: resource("attention", "threads")
    resources:
        gpu=resource("attention", "gpu"),
        mem_mb=resource("attention", "mem_mb"),
        runtime=resource("attention", "runtime"),
    params:
        model=model_params,
        query_block=ATTENTION["query_block"],
        save_matrices=ATTENTION["save_matrices"],
        proximity_ignore=config["receivers"]["proximity_ignore"],
        control_depth=config["receivers"]["control_depth"],
        traces=attention_shard_traces,
        store=f"{RESULTS}/store/attention/{{model}}",
        # A change to what the attention file holds reruns the stage.
        code=code_digest("attention", "receivers.heads"),
    script:
        "../scripts/sentence_attention.py"


rule attention_file:
    input:
        attention_shard_folder,
    output:
        f"{RESULTS}/attention/{{model}}/{{trace}}.npz",
    log:
        f"{RESULTS}/logs/attention_file/{{model}}/{{trace}}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    shell:
        "cp {input}/{wildcards.trace}.npz {output} 2> {log}"


rule attention_all:
    input:
        attention_targets,
