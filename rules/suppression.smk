rule suppression_matrix:
    input:
        tokens=suppression_shard_tokens,
        records=rules.acquire_rollouts.output.records,
        model=model_files,
        heads=suppression_receiver_heads,
    output:
        directory(f"{RESULTS}/suppression/{{model}}/shards/{{shard}}"),
    log:
        f"{RESULTS}/logs/suppression_matrix/{{model}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/suppression_matrix/{{model}}/{{shard}}.tsv"
    conda:
        "../envs/model.yaml"
    threads: resource("suppression", "threads")
    resources:
        gpu=resource("suppression", "gpu"),
        mem_mb=resource("suppression", "mem_mb"),
        runtime=resource("suppression", "runtime"),
    params:
        model=model_params,
        settings=suppression_settings(),
        traces=suppression_shard_traces,
        store=f"{RESULTS}/store/suppression/{{model}}",
    script:
        "../scripts/suppression_matrix.py"


rule suppression_file:
    input:
        suppression_shard_folder,
    output:
        f"{RESULTS}/suppression/{{model}}/{{trace}}.npz",
    log:
        f"{RESULTS}/logs/suppression_file/{{model}}/{{trace}}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    shell:
        "cp {input}/{wildcards.trace}.npz {output} 2> {log}"


rule figure6:
    input:
        matrix=figure6_matrix_file,
    output:
        png=report(
            f"{RESULTS}/figures/{{model}}/figure6.png",
            caption="../report/figure6.rst",
            category="Figures",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/figure6.pdf",
        data=f"{RESULTS}/figures/{{model}}/figure6_data.csv",
    log:
        f"{RESULTS}/logs/figure6/{{model}}.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=resource("receiver_stats", "mem_mb"),
        runtime=resource("receiver_stats", "runtime"),
    params:
        trace=figure6_trace,
        min_distance=SUPPRESSION["figure_min_distance"],
    script:
        "../scripts/figure6.py"


rule suppression_grid:
    input:
        matrices=suppression_matrix_files,
    output:
        png=report(
            f"{RESULTS}/figures/{{model}}/suppression_grid.png",
            caption="../report/figure6_grid.rst",
            category="Figures",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/suppression_grid.pdf",
        data=f"{RESULTS}/figures/{{model}}/suppression_grid_data.csv",
    log:
        f"{RESULTS}/logs/suppression_grid/{{model}}.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=resource("receiver_stats", "mem_mb"),
        runtime=resource("receiver_stats", "runtime"),
    params:
        min_distance=SUPPRESSION["figure_min_distance"],
    script:
        "../scripts/suppression_grid.py"


rule suppression_link:
    input:
        matrices=suppression_matrix_files,
        scores=f"{RESULTS}/receivers/{{model}}/receiver_scores.tsv",
        labels=suppression_label_files,
        records=rules.acquire_rollouts.output.records,
    output:
        importance=f"{RESULTS}/suppression/{{model}}/importance.tsv",
        correlations=report(
            f"{RESULTS}/suppression/{{model}}/correlations.tsv",
            caption="../report/suppression_link.rst",
            category="Suppression",
            subcategory="{model}",
        ),
        png=report(
            f"{RESULTS}/figures/{{model}}/suppression_link.png",
            caption="../report/suppression_link.rst",
            category="Suppression",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/suppression_link.pdf",
        data=f"{RESULTS}/figures/{{model}}/suppression_link_data.csv",
    log:
        f"{RESULTS}/logs/suppression_link/{{model}}.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=resource("receiver_stats", "mem_mb"),
        runtime=resource("receiver_stats", "runtime"),
    params:
        rollouts=model_rollouts_param,
        min_distance=SUPPRESSION["importance_min_distance"],
    script:
        "../scripts/suppression_link.py"


rule suppression_receiver_heads:
    input:
        tokens=suppression_token_files,
        records=rules.acquire_rollouts.output.records,
        model=model_files,
        heads=f"{RESULTS}/receivers/{{model}}/receiver_heads.tsv",
        scores=f"{RESULTS}/receivers/{{model}}/receiver_scores.tsv",
    output:
        report(
            f"{RESULTS}/suppression/{{model}}/receiver_heads_final_kl.tsv",
            caption="../report/suppression_receiver_heads.rst",
            category="Suppression",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/suppression_receiver_heads/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/suppression_receiver_heads/{{model}}.tsv"
    conda:
        "../envs/model.yaml"
    threads: resource("suppression", "threads")
    resources:
        gpu=resource("suppression", "gpu"),
        mem_mb=resource("suppression", "mem_mb"),
        runtime=resource("suppression", "runtime"),
    params:
        model=model_params,
        traces=suppression_traces_param,
        settings=suppression_settings(),
    script:
        "../scripts/suppression_receiver_heads.py"


rule suppression_all:
    input:
        suppression_targets,
