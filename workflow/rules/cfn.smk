# CFN paper: evaluation of each attacked model against the original, under each defense, and
# the paper's Tables 1-4 and the SRC / p-value Figures 5-7, 12-18 (each its own target), with
# the published values.


rule evaluate_backdoor:
    input:
        unpack(CFN.evaluate_backdoor_inputs),
    output:
        summary=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/evaluation.json",
        samples=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/per_sample.parquet",
    params:
        evaluation=CFN.backdoor_evaluation(),
        target_label=config["backdoor"]["finetune"]["target_label"],
        code=code("evaluate_backdoor.py"),
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
        planned(CFN.table_inputs),
    output:
        csv=report(
            f"{R}/tables/cfn_table{{n}}.csv",
            caption="../report/caption.rst",
            category="CFN paper",
            subcategory="Tables",
        ),
        md=f"{R}/tables/cfn_table{{n}}.md",
    wildcard_constraints:
        n="[1-4]",
    params:
        spec=CFN.table_spec,
        caption=CFN.caption("table"),
        code=code("cfn_table.py"),
    log:
        f"{R}/logs/tables/cfn_table{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_table.py"


rule cfn_comparison:
    input:
        CFN.comparison_inputs,
    output:
        csv=report(
            f"{R}/tables/cfn_comparison.csv",
            caption="../report/cfn_comparison.rst",
            category="CFN paper",
            subcategory="Comparison with the paper",
        ),
        md=f"{R}/tables/cfn_comparison.md",
    params:
        tables=CFN.comparison_tables(),
        code=code("cfn_comparison.py"),
    log:
        f"{R}/logs/tables/cfn_comparison.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_comparison.py"


rule cfn_src_figure:
    input:
        planned(CFN.src_inputs),
    output:
        png=report(
            f"{R}/figures/cfn_fig{{n}}.png",
            caption="../report/caption.rst",
            category="CFN paper",
            subcategory="SRC and p-value figures",
        ),
        pdf=f"{R}/figures/cfn_fig{{n}}.pdf",
    wildcard_constraints:
        n="5|6|7|12|13|14|15|16|17|18",
    params:
        models=CFN.src_models,
        caption=CFN.caption("src"),
        code=code("cfn_src_figure.py"),
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
