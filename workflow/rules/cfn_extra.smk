# CFN paper, the rest: attack scenarios C3/C5 (Tables 6-7), models without BN / with frozen BN
# (Table 5, Figures 15-18), Softplus models (Table 8, Figures 7, 14), p-value figures (12, 13),
# weight similarity (Figures 3, 10, 11), the batch-size ablation (Figures 8-9) and the example
# grids (Figures 1, 2, 19-24). Each table and figure is its own target.


rule finetune_scenario:
    input:
        unpack(data_files),
        clean_model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        clean_meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
    output:
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/model.json",
        metrics=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/metrics.csv",
        provenance=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/provenance.json",
    params:
        finetune=config["backdoor"]["finetune"],
        hyper=backdoor_hyper,
        xai=config["xai"],
        code=code_version("backdoor", "explainers", "models", "train", "datasets", "tasks", "defenses"),
    log:
        f"{R}/logs/finetune_scenario/{{dataset}}-{{model}}-seed{{seed}}-{{attack}}-{{explainer}}-{{loss}}-{{scenario}}.log",
    benchmark:
        f"{R}/benchmarks/finetune_scenario/{{dataset}}-{{model}}-seed{{seed}}-{{attack}}-{{explainer}}-{{loss}}-{{scenario}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=600,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/finetune_backdoor.py"


rule evaluate_scenario:
    input:
        unpack(data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/model.pt",
    output:
        f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/accuracy.json",
    params:
        evaluation=config["evaluation"],
        code=code_version("models", "defenses", "evaluate", "train", "tasks"),
    log:
        f"{R}/logs/evaluate_scenario/{{dataset}}-{{model}}-seed{{seed}}-{{attack}}-{{explainer}}-{{loss}}-{{scenario}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=30,
        mem_mb=4000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/evaluate_clean.py"


rule batchsize_ablation:
    input:
        unpack(data_files),
        original=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        attacked=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/model.pt",
    output:
        f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/batchsize.csv",
    params:
        settings=config["backdoor"]["ablation"],
        evaluation=config["evaluation"],
        trigger=trigger_params(),
        target_label=config["backdoor"]["finetune"]["target_label"],
        xai=config["xai"],
        code=code_version("cfn_ablation", "explain_cache", "cfn_eval", "explainers", "defenses", "tasks"),
    log:
        f"{R}/logs/batchsize_ablation/{{dataset}}-{{model}}-seed{{seed}}-{{attack}}-{{explainer}}-{{loss}}.log",
    benchmark:
        f"{R}/benchmarks/batchsize_ablation/{{dataset}}-{{model}}-seed{{seed}}-{{attack}}-{{explainer}}-{{loss}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/batchsize_ablation.py"


rule cfn_table_extra:
    input:
        unpack(cfn_table_extra_inputs),
    output:
        csv=report(
            f"{R}/tables/cfn_table{{n}}.csv",
            caption="../report/cfn_table_extra.rst",
            category="CFN paper",
            subcategory="Tables 5-8",
        ),
        md=f"{R}/tables/cfn_table{{n}}.md",
    wildcard_constraints:
        n="[5-8]",
    params:
        code=code_version("cfn_report", "cfn_eval", "report"),
    log:
        f"{R}/logs/tables/cfn_table{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_table_extra.py"


rule cfn_figure_extra:
    input:
        unpack(cfn_figure_extra_inputs),
    output:
        png=report(
            f"{R}/figures/cfn_fig{{n}}.png",
            caption="../report/cfn_figure_extra.rst",
            category="CFN paper",
            subcategory="Figures 1-4, 7-24",
        ),
        pdf=f"{R}/figures/cfn_fig{{n}}.pdf",
    wildcard_constraints:
        n="1|2|3|4|7|8|9|10|11|12|13|14|15|16|17|18|19|20|21|22|23|24",
    params:
        spec=cfn_figure_extra_params,
        trigger=trigger_params(),
        xai=config["xai"],
        examples=config["backdoor"]["examples"],
        code=code_version("cfn_report", "cfn_examples", "weight_similarity", "report", "tasks"),
    log:
        f"{R}/logs/figures/cfn_fig{{n}}.log",
    threads: 2
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_figure_extra.py"


localrules:
    cfn_table_extra,
