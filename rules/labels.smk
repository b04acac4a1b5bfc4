if label_uses_api():

    envvars:
        "ANTHROPIC_API_KEY",

    check_api_key()


rule label_trace:
    input:
        records=rules.acquire_rollouts.output.records,
        batch=label_batch_marker_configured,
    output:
        f"{RESULTS}/labels/{{rollouts}}/{{trace}}.json",
    log:
        f"{RESULTS}/logs/label_trace/{{rollouts}}/{{trace}}.log",
    retries: 2
    localrule: True
    conda:
        "../envs/labels.yaml"
    resources:
        mem_mb=resource("labels", "mem_mb"),
        runtime=resource("labels", "runtime"),
        llm_api=label_api_slots,
    params:
        labelling=label_params_configured,
    script:
        "../scripts/label_trace.py"


rule label_trace_anthropic:
    input:
        records=rules.acquire_rollouts.output.records,
        batch=label_batch_marker,
    output:
        f"{RESULTS}/labels/{{rollouts}}/anthropic/{{trace}}.json",
    log:
        f"{RESULTS}/logs/label_trace_anthropic/{{rollouts}}/{{trace}}.log",
    retries: 2
    localrule: True
    conda:
        "../envs/labels.yaml"
    resources:
        mem_mb=resource("labels", "mem_mb"),
        runtime=resource("labels", "runtime"),
        llm_api=1,
    params:
        labelling=label_params_anthropic,
    script:
        "../scripts/label_trace.py"


rule label_batch:
    input:
        records=rules.acquire_rollouts.output.records,
        manifest=rules.acquire_rollouts.output.manifest,
    output:
        f"{RESULTS}/labels/{{rollouts}}/batch.json",
    log:
        f"{RESULTS}/logs/label_batch/{{rollouts}}.log",
    retries: 2
    localrule: True
    conda:
        "../envs/labels.yaml"
    resources:
        mem_mb=resource("labels", "mem_mb"),
        runtime=resource("labels", "runtime"),
        llm_api=1,
    params:
        labelling=label_params_anthropic,
    script:
        "../scripts/label_batch.py"


rule label_usage:
    input:
        anthropic_label_files,
    output:
        f"{RESULTS}/labels/{{rollouts}}/usage.tsv",
    log:
        f"{RESULTS}/logs/label_usage/{{rollouts}}.log",
    conda:
        "../envs/labels.yaml"
    resources:
        mem_mb=resource("labels", "mem_mb"),
        runtime=resource("labels", "runtime"),
    script:
        "../scripts/label_usage.py"


rule label_agreement:
    input:
        records=rules.acquire_rollouts.output.records,
        anthropic=anthropic_label_files,
    output:
        png=report(
            f"{RESULTS}/labels/{{rollouts}}/agreement/confusion.png",
            caption="../report/labels_agreement.rst",
            category="Labels",
            subcategory="{rollouts}",
        ),
        pdf=f"{RESULTS}/labels/{{rollouts}}/agreement/confusion.pdf",
        data=f"{RESULTS}/labels/{{rollouts}}/agreement/confusion_data.csv",
        per_category=report(
            f"{RESULTS}/labels/{{rollouts}}/agreement/per_category.tsv",
            caption="../report/labels_per_category.rst",
            category="Labels",
            subcategory="{rollouts}",
        ),
        kappa=f"{RESULTS}/labels/{{rollouts}}/agreement/kappa.json",
    log:
        f"{RESULTS}/logs/label_agreement/{{rollouts}}.log",
    conda:
        "../envs/labels.yaml"
    resources:
        mem_mb=resource("labels", "mem_mb"),
        runtime=resource("labels", "runtime"),
    script:
        "../scripts/label_agreement.py"


rule labels_all:
    input:
        label_targets,
