# CFN paper: evaluation of each attacked model against the original, under each defense, and
# the paper's Tables 1-4 and Figures 5-6 (each its own target), with the published values.


rule evaluate_backdoor:
    input:
        unpack(evaluate_backdoor_inputs),
    output:
        summary=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/evaluation.json",
        samples=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/per_sample.parquet",
    params:
        evaluation=config["evaluation"],
        target_label=config["backdoor"]["finetune"]["target_label"],
        code=code_version("cfn_eval", "cache", "metrics", "backdoor", "tasks"),
    log:
        f"{R}/logs/evaluate_backdoor/{{dataset}}-{{model}}-seed{{seed}}-{{attack}}-{{explainer}}-{{loss}}.log",
    resources:
        runtime=30,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/evaluate_backdoor.py"


rule cfn_table:
    input:
        cfn_table_inputs,
    output:
        csv=report(
            f"{R}/tables/cfn_table{{n}}.csv",
            caption="../report/cfn_table.rst",
            category="CFN paper",
            subcategory="Tables 1-4",
        ),
        md=f"{R}/tables/cfn_table{{n}}.md",
    wildcard_constraints:
        n="[1-4]",
    params:
        spec=cfn_table_spec,
        code=code_version("cfn_eval", "report"),
    log:
        f"{R}/logs/tables/cfn_table{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_table.py"


rule cfn_comparison:
    input:
        cfn_comparison_inputs,
    output:
        csv=report(
            f"{R}/tables/cfn_comparison.csv",
            caption="../report/cfn_comparison.rst",
            category="CFN paper",
            subcategory="Comparison with the paper",
        ),
        md=f"{R}/tables/cfn_comparison.md",
    params:
        tables=cfn_comparison_tables(),
        code=code_version("cfn_eval", "report"),
    log:
        f"{R}/logs/tables/cfn_comparison.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_comparison.py"


rule cfn_src_figure:
    input:
        cfn_figure_inputs,
    output:
        png=report(
            f"{R}/figures/cfn_fig{{n}}.png",
            caption="../report/cfn_src_figure.rst",
            category="CFN paper",
            subcategory="Figures 5-6",
        ),
        pdf=f"{R}/figures/cfn_fig{{n}}.pdf",
    wildcard_constraints:
        n="[56]",
    params:
        code=code_version("cfn_eval", "report"),
    log:
        f"{R}/logs/figures/cfn_fig{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_src_figure.py"


localrules:
    cfn_table,
    cfn_comparison,
    cfn_src_figure,
