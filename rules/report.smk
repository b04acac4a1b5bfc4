rule write_config:
    output:
        report(
            f"{RESULTS}/report/config.yaml",
            caption="../report/config.rst",
            category="Configuration",
        ),
    log:
        f"{RESULTS}/logs/write_config.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=resource("default", "mem_mb"),
        runtime=resource("default", "runtime"),
    params:
        config=config,
    script:
        "../scripts/write_config.py"


rule report_all:
    input:
        f"{RESULTS}/report/config.yaml",
