rule intervention_conditions:
    input:
        unpack(intervention_patching_inputs),
        receivers=intervention_receiver_heads,
        model=model_files,
    output:
        f"{RESULTS}/interventions/{{model}}/conditions.json",
    log:
        f"{RESULTS}/logs/intervention_conditions/{{model}}.log",
    conda:
        "../envs/interventions.yaml"
    resources:
        mem_mb=resource("intervention_tables", "mem_mb"),
        runtime=resource("intervention_tables", "runtime"),
    params:
        interventions=INTERVENTIONS,
        model=model_params,
        rollouts=intervention_rollouts,
    script:
        "../scripts/intervention_conditions.py"


rule intervention_problems:
    input:
        unpack(intervention_problem_source),
    output:
        problems=f"{RESULTS}/interventions/{{model}}/problems/problems.json",
        selection=report(
            f"{RESULTS}/interventions/{{model}}/problems/selection.tsv",
            caption="../report/interventions_problems.rst",
            category="Interventions",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/intervention_problems/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/intervention_problems/{{model}}.tsv"
    conda:
        "../envs/interventions.yaml"
    threads: resource("interventions", "threads")
    resources:
        gpu=problem_selection_gpu,
        mem_mb=resource("interventions", "mem_mb"),
        runtime=resource("interventions", "runtime"),
    params:
        generation=intervention_problem_params,
        model=model_params,
        rollouts=intervention_rollouts,
    script:
        "../scripts/intervention_problems.py"


rule intervention_head_means:
    input:
        records=rules.acquire_rollouts.output.records,
        model=model_files,
    output:
        f"{RESULTS}/interventions/{{model}}/head_means.npz",
    log:
        f"{RESULTS}/logs/intervention_head_means/{{model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/intervention_head_means/{{model}}.tsv"
    conda:
        "../envs/interventions.yaml"
    threads: resource("interventions", "threads")
    resources:
        gpu=resource("interventions", "gpu"),
        mem_mb=resource("interventions", "mem_mb"),
        runtime=resource("interventions", "runtime"),
    params:
        model=model_params,
        rollouts=intervention_rollouts,
        prompt_format=INTERVENTIONS["prompt_format"],
        settings=INTERVENTIONS["head_means"],
    script:
        "../scripts/intervention_head_means.py"


rule intervention_generate:
    input:
        unpack(intervention_problems_input),
        unpack(intervention_means_input),
        conditions=f"{RESULTS}/interventions/{{model}}/conditions.json",
        records=rules.acquire_rollouts.output.records,
        model=model_files,
    output:
        f"{RESULTS}/interventions/{{model}}/{{experiment}}/generations/{{group}}/{{shard}}.json",
    log:
        f"{RESULTS}/logs/intervention_generate/{{model}}/{{experiment}}/{{group}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/intervention_generate/{{model}}/{{experiment}}/{{group}}/{{shard}}.tsv"
    conda:
        "../envs/interventions.yaml"
    threads: resource("interventions", "threads")
    resources:
        gpu=resource("interventions", "gpu"),
        mem_mb=resource("interventions", "mem_mb"),
        runtime=resource("interventions", "runtime"),
    params:
        generation=intervention_generation_params,
        model=model_params,
        rollouts=intervention_rollouts,
    script:
        "../scripts/intervention_generate.py"


rule intervention_score:
    input:
        shards=intervention_shards,
        conditions=f"{RESULTS}/interventions/{{model}}/conditions.json",
    output:
        scored=f"{RESULTS}/interventions/{{model}}/{{experiment}}/scored.jsonl",
        accuracy=f"{RESULTS}/interventions/{{model}}/{{experiment}}/accuracy.tsv",
        failure_modes=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/failure_modes.tsv",
            caption="../report/interventions_failure_modes.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        strata=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/strata.tsv",
            caption="../report/interventions_strata.rst",
            category="Interventions",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/intervention_score/{{model}}/{{experiment}}.log",
    wildcard_constraints:
        experiment="|".join(ACCURACY_EXPERIMENTS),
    conda:
        "../envs/interventions.yaml"
    resources:
        mem_mb=resource("intervention_tables", "mem_mb"),
        runtime=resource("intervention_tables", "runtime"),
    params:
        extractor=INTERVENTIONS["extractor"],
        failure_modes=INTERVENTIONS["failure_modes"],
        strata=INTERVENTIONS["strata"],
    script:
        "../scripts/intervention_score.py"


rule intervention_amplification:
    input:
        scored=f"{RESULTS}/interventions/{{model}}/amplification/scored.jsonl",
        conditions=f"{RESULTS}/interventions/{{model}}/conditions.json",
    output:
        table=report(
            f"{RESULTS}/interventions/{{model}}/amplification/amplification.tsv",
            caption="../report/interventions_amplification.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        draws=f"{RESULTS}/interventions/{{model}}/amplification/amplification_draws.tsv",
        markdown=f"{RESULTS}/interventions/{{model}}/amplification/amplification.md",
        png=report(
            f"{RESULTS}/interventions/{{model}}/amplification/amplification.png",
            caption="../report/interventions_amplification.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/interventions/{{model}}/amplification/amplification.pdf",
        data=f"{RESULTS}/interventions/{{model}}/amplification/amplification_data.csv",
    log:
        f"{RESULTS}/logs/intervention_amplification/{{model}}.log",
    conda:
        "../envs/interventions.yaml"
    resources:
        mem_mb=resource("intervention_tables", "mem_mb"),
        runtime=resource("intervention_tables", "runtime"),
    script:
        "../scripts/intervention_amplification.py"


rule intervention_ablation:
    input:
        scored=f"{RESULTS}/interventions/{{model}}/ablation/scored.jsonl",
        conditions=f"{RESULTS}/interventions/{{model}}/conditions.json",
    output:
        table=report(
            f"{RESULTS}/interventions/{{model}}/ablation/ablation.tsv",
            caption="../report/interventions_ablation.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        draws=f"{RESULTS}/interventions/{{model}}/ablation/ablation_draws.tsv",
        markdown=f"{RESULTS}/interventions/{{model}}/ablation/ablation.md",
        png=report(
            f"{RESULTS}/interventions/{{model}}/ablation/ablation.png",
            caption="../report/interventions_ablation.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/interventions/{{model}}/ablation/ablation.pdf",
        data=f"{RESULTS}/interventions/{{model}}/ablation/ablation_data.csv",
    log:
        f"{RESULTS}/logs/intervention_ablation/{{model}}.log",
    conda:
        "../envs/interventions.yaml"
    resources:
        mem_mb=resource("intervention_tables", "mem_mb"),
        runtime=resource("intervention_tables", "runtime"),
    script:
        "../scripts/intervention_ablation.py"


rule intervention_patching:
    input:
        scored=f"{RESULTS}/interventions/{{model}}/patching/scored.jsonl",
        conditions=f"{RESULTS}/interventions/{{model}}/conditions.json",
    output:
        table=report(
            f"{RESULTS}/interventions/{{model}}/patching/patching.tsv",
            caption="../report/interventions_patching.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        draws=f"{RESULTS}/interventions/{{model}}/patching/patching_draws.tsv",
        sentences=f"{RESULTS}/interventions/{{model}}/patching/sentences.tsv",
        markdown=f"{RESULTS}/interventions/{{model}}/patching/patching.md",
        png=report(
            f"{RESULTS}/interventions/{{model}}/patching/patching.png",
            caption="../report/interventions_patching.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/interventions/{{model}}/patching/patching.pdf",
        data=f"{RESULTS}/interventions/{{model}}/patching/patching_data.csv",
    log:
        f"{RESULTS}/logs/intervention_patching/{{model}}.log",
    conda:
        "../envs/interventions.yaml"
    resources:
        mem_mb=resource("intervention_tables", "mem_mb"),
        runtime=resource("intervention_tables", "runtime"),
    script:
        "../scripts/intervention_patching.py"


rule intervention_counterfactual:
    input:
        shards=intervention_shards,
        records=rules.acquire_rollouts.output.records,
        model=model_files,
        conditions=f"{RESULTS}/interventions/{{model}}/conditions.json",
    output:
        sentences=f"{RESULTS}/interventions/{{model}}/{{experiment}}/importance.tsv",
        table=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/by_category.tsv",
            caption="../report/interventions_counterfactual.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        markdown=f"{RESULTS}/interventions/{{model}}/{{experiment}}/by_category.md",
        png=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/by_category.png",
            caption="../report/interventions_counterfactual.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/interventions/{{model}}/{{experiment}}/by_category.pdf",
        data=f"{RESULTS}/interventions/{{model}}/{{experiment}}/by_category_data.csv",
        controls=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/controls.tsv",
            caption="../report/interventions_counterfactual.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        box_png=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/by_category_box.png",
            caption="../report/interventions_counterfactual.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        box_pdf=f"{RESULTS}/interventions/{{model}}/{{experiment}}/by_category_box.pdf",
        box_data=f"{RESULTS}/interventions/{{model}}/{{experiment}}/by_category_box_data.csv",
        similarity=f"{RESULTS}/interventions/{{model}}/{{experiment}}/similarity_by_category.tsv",
        changes=f"{RESULTS}/interventions/{{model}}/{{experiment}}/changes.tsv",
        change_by_category=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/change_by_category.tsv",
            caption="../report/interventions_counterfactual.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        top_changes=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/top_changes.tsv",
            caption="../report/interventions_counterfactual.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        dropdown=f"{RESULTS}/interventions/{{model}}/{{experiment}}/dropdown.tsv",
        dropdown_growth=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/dropdown_growth.tsv",
            caption="../report/interventions_counterfactual.rst",
            category="Interventions",
            subcategory="{model}",
        ),
    log:
        f"{RESULTS}/logs/intervention_counterfactual/{{model}}/{{experiment}}.log",
    wildcard_constraints:
        experiment="counterfactual",
    conda:
        "../envs/interventions.yaml"
    resources:
        mem_mb=resource("intervention_tables", "mem_mb"),
        runtime=resource("intervention_tables", "runtime"),
    params:
        counterfactual=intervention_counterfactual_params,
        model=lambda wildcards: model_spec(wildcards.model),
    script:
        "../scripts/intervention_counterfactual.py"


rule intervention_attention:
    input:
        scored=f"{RESULTS}/interventions/{{model}}/{{experiment}}/scored.jsonl",
        conditions=f"{RESULTS}/interventions/{{model}}/conditions.json",
    output:
        table=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/{{experiment}}.tsv",
            caption="../report/interventions_attention.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        draws=f"{RESULTS}/interventions/{{model}}/{{experiment}}/{{experiment}}_draws.tsv",
        details=f"{RESULTS}/interventions/{{model}}/{{experiment}}/acted_on.tsv",
        markdown=f"{RESULTS}/interventions/{{model}}/{{experiment}}/{{experiment}}.md",
        png=report(
            f"{RESULTS}/interventions/{{model}}/{{experiment}}/{{experiment}}.png",
            caption="../report/interventions_attention.rst",
            category="Interventions",
            subcategory="{model}",
        ),
        pdf=f"{RESULTS}/interventions/{{model}}/{{experiment}}/{{experiment}}.pdf",
        data=f"{RESULTS}/interventions/{{model}}/{{experiment}}/{{experiment}}_data.csv",
    log:
        f"{RESULTS}/logs/intervention_attention/{{model}}/{{experiment}}.log",
    wildcard_constraints:
        experiment="|".join(ATTENTION_EXPERIMENTS),
    conda:
        "../envs/interventions.yaml"
    resources:
        mem_mb=resource("intervention_tables", "mem_mb"),
        runtime=resource("intervention_tables", "runtime"),
    script:
        "../scripts/intervention_attention.py"


rule interventions_all:
    input:
        interventions_targets,
