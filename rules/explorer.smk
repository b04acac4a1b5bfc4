rule explorer:
    input:
        rules.data_all.input,
        rules.labels_all.input,
        rules.attention_all.input,
        rules.receivers_all.input,
        rules.suppression_all.input,
        rules.interventions_all.input,
        records=rules.acquire_rollouts.output.records,
    output:
        index=report(
            f"{RESULTS}/explorer/index.html",
            caption="../report/explorer.rst",
            category="Explorer",
        ),
        pages=directory(f"{RESULTS}/explorer/traces"),
    log:
        f"{RESULTS}/logs/explorer.log",
    conda:
        "../envs/analysis.yaml"
    resources:
        mem_mb=resource("default", "mem_mb"),
        runtime=resource("default", "runtime"),
    params:
        run=config["run"],
        models={name: model["rollouts"] for name, model in MODELS.items()},
        interventions_model=INTERVENTION_MODEL,
        curve_heads=config["receivers"]["curve_heads"],
        code=code_digest("explorer.pages", "explorer.render"),
    script:
        "../scripts/explorer.py"
