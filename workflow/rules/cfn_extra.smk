# CFN paper, the rest: attack scenarios C3/C5 (Tables 6-7), models without BN / with frozen BN
# (Table 5), Softplus models (Table 8), weight similarity (Figures 3, 10, 11), the batch-size
# ablation (Figures 8-9), and the figures drawn from example images: the grids (Figures 1, 2,
# 19-24) and the final layer's activation (Figure 4). Each table and figure is its own target;
# one rule per kind.


rule finetune_scenario:
    input:
        unpack(PLAN.data_files),
        clean_model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        clean_meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
    output:
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/model.json",
        metrics=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/metrics.csv",
        provenance=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/provenance.json",
    params:
        finetune=config["backdoor"]["finetune"],
        hyper=CFN.hyper,
        xai=CFN.xai,
        code=code("finetune_backdoor.py"),
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
        unpack(PLAN.data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/model.pt",
    output:
        f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}-{{scenario}}/accuracy.json",
    params:
        evaluation=PLAN.clean_evaluation(),
        code=code("evaluate_clean.py"),
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
        unpack(PLAN.data_files),
        original=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        attacked=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/model.pt",
    output:
        f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/batchsize.csv",
    params:
        settings=CFN.ablation_settings(),
        evaluation=CFN.ablation_evaluation(),
        trigger=CFN.trigger(),
        target_label=config["backdoor"]["finetune"]["target_label"],
        xai=CFN.xai,
        code=code("batchsize_ablation.py"),
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


rule cfn_table5:
    input:
        planned(CFN.table5_inputs),
    output:
        csv=report(
            f"{R}/tables/cfn_table5.csv",
            caption="../report/caption.rst",
            category="CFN paper",
            subcategory="Tables",
        ),
        md=f"{R}/tables/cfn_table5.md",
    params:
        models=CFN.table5_models,
        caption=CFN.CAPTIONS["table5"],
        code=code("cfn_table5.py"),
    log:
        f"{R}/logs/tables/cfn_table5.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_table5.py"


rule cfn_table6:
    output:
        csv=report(
            f"{R}/tables/cfn_table6.csv",
            caption="../report/caption.rst",
            category="CFN paper",
            subcategory="Tables",
        ),
        md=f"{R}/tables/cfn_table6.md",
    params:
        caption=CFN.CAPTIONS["table6"],
        code=code("cfn_table6.py"),
    log:
        f"{R}/logs/tables/cfn_table6.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_table6.py"


rule cfn_table7:
    input:
        unpack(planned(CFN.table7_inputs)),
    output:
        csv=report(
            f"{R}/tables/cfn_table7.csv",
            caption="../report/caption.rst",
            category="CFN paper",
            subcategory="Tables",
        ),
        md=f"{R}/tables/cfn_table7.md",
    params:
        caption=CFN.CAPTIONS["table7"],
        code=code("cfn_table7.py"),
    log:
        f"{R}/logs/tables/cfn_table7.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_table7.py"


rule cfn_table8:
    input:
        planned(CFN.table8_inputs),
    output:
        csv=report(
            f"{R}/tables/cfn_table8.csv",
            caption="../report/caption.rst",
            category="CFN paper",
            subcategory="Tables",
        ),
        md=f"{R}/tables/cfn_table8.md",
    params:
        models=CFN.table8_models,
        caption=CFN.CAPTIONS["table8"],
        code=code("cfn_table8.py"),
    log:
        f"{R}/logs/tables/cfn_table8.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_table8.py"


rule cfn_weight_figure:
    input:
        planned(CFN.weight_inputs),
    output:
        png=report(
            f"{R}/figures/cfn_fig{{n}}.png",
            caption="../report/caption.rst",
            category="CFN paper",
            subcategory="Weight similarity",
        ),
        pdf=f"{R}/figures/cfn_fig{{n}}.pdf",
    wildcard_constraints:
        n="3|10|11",
    params:
        pairs=CFN.weight_params,
        caption=CFN.caption("weights"),
        code=code("cfn_weight_figure.py"),
    log:
        f"{R}/logs/figures/cfn_fig{{n}}.log",
    threads: 2
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_weight_figure.py"


rule cfn_batchsize_figure:
    input:
        csv=CFN.ablation_csv(),
    output:
        png=report(
            f"{R}/figures/cfn_fig{{n}}.png",
            caption="../report/caption.rst",
            category="CFN paper",
            subcategory="Batch-size ablation",
        ),
        pdf=f"{R}/figures/cfn_fig{{n}}.pdf",
    wildcard_constraints:
        n="8|9",
    params:
        caption=CFN.caption("batchsize"),
        code=code("cfn_batchsize_figure.py"),
    log:
        f"{R}/logs/figures/cfn_fig{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_batchsize_figure.py"


rule cfn_example_figure:
    input:
        unpack(CFN.example_inputs),
    output:
        png=report(
            f"{R}/figures/cfn_fig{{n}}.png",
            caption="../report/caption.rst",
            category="CFN paper",
            subcategory="Examples",
        ),
        pdf=f"{R}/figures/cfn_fig{{n}}.pdf",
    wildcard_constraints:
        n="1|2|4|19|20|21|22|23|24",
    params:
        spec=CFN.example_spec,
        trigger=CFN.trigger(),
        xai=CFN.example_xai,
        examples=CFN.example_settings(),
        caption=CFN.caption("examples"),
        code=code("cfn_example_figure.py"),
    log:
        f"{R}/logs/figures/cfn_fig{{n}}.log",
    threads: 2
    conda:
        "../../environment.yml"
    script:
        "../../scripts/cfn_example_figure.py"


localrules:
    cfn_table5,
    cfn_table6,
    cfn_table7,
    cfn_table8,
    cfn_batchsize_figure,
