rule receiver_heads:
    input:
        attention=model_attention_files,
        sentences=model_sentence_files,
    output:
        kurtosis=f"{RESULTS}/receivers/{{model}}/kurtosis.tsv",
        heads=report(
            f"{RESULTS}/receivers/{{model}}/receiver_heads.tsv",
            caption="../report/receivers.rst",
            category="Receiver heads",
            subcategory="{model}",
        ),
        reliability=report(
            f"{RESULTS}/receivers/{{model}}/reliability.tsv",
            caption="../report/receivers.rst",
            category="Receiver heads",
            subcategory="{model}",
        ),
        scores=f"{RESULTS}/receivers/{{model}}/receiver_scores.tsv",
        summary=f"{RESULTS}/receivers/{{model}}/summary.json",
    log:
        f"{RESULTS}/logs/receiver_heads/{{model}}.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=resource("receiver_stats", "mem_mb"),
        runtime=resource("receiver_stats", "runtime"),
    params:
        statistics=receiver_statistics(),
    script:
        "../scripts/receiver_heads.py"


rule figure4:
    input:
        kurtosis=f"{RESULTS}/receivers/{{model}}/kurtosis.tsv",
        heads=f"{RESULTS}/receivers/{{model}}/receiver_heads.tsv",
        reliability=f"{RESULTS}/receivers/{{model}}/reliability.tsv",
        attention=figure_trace_attention,
    output:
        png=report(
            f"{RESULTS}/figures/{{model}}/figure4.png",
            caption="../report/figure4.rst",
            category="Figures",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/figure4.pdf",
        data=f"{RESULTS}/figures/{{model}}/figure4_data.csv",
    log:
        f"{RESULTS}/logs/figure4/{{model}}.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=resource("receiver_stats", "mem_mb"),
        runtime=resource("receiver_stats", "runtime"),
    params:
        trace=figure_trace,
        head=RECEIVERS["figure_head"],
        curve_heads=RECEIVERS["curve_heads"],
    script:
        "../scripts/figure4.py"


rule figure5:
    input:
        scores=f"{RESULTS}/receivers/{{model}}/receiver_scores.tsv",
        labels=model_label_files,
    output:
        png=report(
            f"{RESULTS}/figures/{{model}}/figure5.png",
            caption="../report/figure5.rst",
            category="Figures",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/figure5.pdf",
        data=f"{RESULTS}/figures/{{model}}/figure5_data.csv",
        ttests=f"{RESULTS}/figures/{{model}}/figure5_ttests.tsv",
        markdown=report(
            f"{RESULTS}/figures/{{model}}/figure5_ttests.md",
            caption="../report/figure5.rst",
            category="Figures",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/figure5/{{model}}.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=resource("receiver_stats", "mem_mb"),
        runtime=resource("receiver_stats", "runtime"),
    params:
        categories=RECEIVERS["categories"],
        min_count=RECEIVERS["min_count"],
        min_count_of=RECEIVERS["min_count_of"],
        title="Receiver-head scores by sentence category ({model})",
    script:
        "../scripts/figure5.py"


rule whitebox_blackbox:
    input:
        attention=model_attention_files,
        sentences=model_sentence_files,
        labels=model_label_files,
        heads=f"{RESULTS}/receivers/{{model}}/receiver_heads.tsv",
        records=rules.acquire_rollouts.output.records,
    output:
        sentences=f"{RESULTS}/receivers/{{model}}/blackbox/sentences.tsv",
        per_trace=f"{RESULTS}/receivers/{{model}}/blackbox/per_trace.tsv",
        correlations=report(
            f"{RESULTS}/receivers/{{model}}/blackbox/correlations.tsv",
            caption="../report/whitebox_blackbox.rst",
            category="White-box vs black-box",
            subcategory="{model}",
        ),
        markdown=report(
            f"{RESULTS}/receivers/{{model}}/blackbox/correlations.md",
            caption="../report/whitebox_blackbox.rst",
            category="White-box vs black-box",
            subcategory="{model}",
        ),
        png=report(
            f"{RESULTS}/figures/{{model}}/whitebox_blackbox.png",
            caption="../report/whitebox_blackbox.rst",
            category="White-box vs black-box",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/figures/{{model}}/whitebox_blackbox.pdf",
        data=f"{RESULTS}/figures/{{model}}/whitebox_blackbox_data.csv",
    log:
        f"{RESULTS}/logs/whitebox_blackbox/{{model}}.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=resource("receiver_stats", "mem_mb"),
        runtime=resource("receiver_stats", "runtime"),
    params:
        rollouts=lambda wildcards: model_rollouts(wildcards.model),
        top_k=RECEIVERS["top_k"],
        n_bootstrap=RECEIVERS["n_bootstrap"],
        seed=RECEIVERS["seed"],
        figure_metric=RECEIVERS["blackbox"]["figure_metric"],
        figure_score=RECEIVERS["blackbox"]["figure_score"],
    script:
        "../scripts/whitebox_blackbox.py"


rule receivers_all:
    input:
        receivers_targets,
