# FGSM-XAI paper: FGSM and BIM inputs, their explanations (Grad-CAM, SmoothGrad, LIME) cached
# to Parquet, and Tables 1-2 (IoU, RMSE against ground-truth masks), the accuracy table and
# Figures 5-9, each its own target.


rule fgsmxai_inputs:
    input:
        unpack(PLAN.data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
    output:
        inputs=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/fgsmxai/inputs.npz",
        accuracy=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/fgsmxai/accuracy.json",
    params:
        settings=FGSMXAI.inputs_settings(),
        code=code("fgsmxai_inputs.py"),
    log:
        f"{R}/logs/fgsmxai_inputs/{{dataset}}-{{model}}-seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/fgsmxai_inputs/{{dataset}}-{{model}}-seed{{seed}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=60,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/fgsmxai_inputs.py"


rule fgsmxai_explain:
    input:
        unpack(PLAN.data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
        inputs=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/fgsmxai/inputs.npz",
    output:
        f"{R}/{{dataset}}/{{model}}/seed{{seed}}/fgsmxai/cache/{{variant}}-{{fxm}}.parquet",
    params:
        settings=FGSMXAI.explain_settings,
        code=code("fgsmxai_explain.py"),
    log:
        f"{R}/logs/fgsmxai_explain/{{dataset}}-{{model}}-seed{{seed}}-{{variant}}-{{fxm}}.log",
    benchmark:
        f"{R}/benchmarks/fgsmxai_explain/{{dataset}}-{{model}}-seed{{seed}}-{{variant}}-{{fxm}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/fgsmxai_explain.py"


rule fgsmxai_table:
    input:
        unpack(FGSMXAI.table_inputs),
    output:
        csv=report(
            f"{R}/tables/fgsmxai_table{{n}}.csv",
            caption="../report/caption.rst",
            category="FGSM-XAI paper",
            subcategory="Tables 1-2",
        ),
        md=f"{R}/tables/fgsmxai_table{{n}}.md",
    wildcard_constraints:
        n="[12]",
    params:
        runs=FGSMXAI.run_params,
        settings=FGSMXAI.report_settings(),
        caption=FGSMXAI.caption,
        code=code("fgsmxai_table.py"),
    log:
        f"{R}/logs/tables/fgsmxai_table{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/fgsmxai_table.py"


rule fgsmxai_accuracy:
    input:
        FGSMXAI.accuracy_inputs,
    output:
        csv=report(
            f"{R}/tables/fgsmxai_accuracy.csv",
            caption="../report/caption.rst",
            category="FGSM-XAI paper",
            subcategory="Accuracy under attack",
        ),
        md=f"{R}/tables/fgsmxai_accuracy.md",
    params:
        caption=FGSMXAI.caption,
        code=code("fgsmxai_accuracy.py"),
    log:
        f"{R}/logs/tables/fgsmxai_accuracy.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/fgsmxai_accuracy.py"


rule fgsmxai_figure:
    input:
        unpack(FGSMXAI.figure_inputs),
    output:
        png=report(
            f"{R}/figures/fgsmxai_fig{{n}}.png",
            caption="../report/caption.rst",
            category="FGSM-XAI paper",
            subcategory="Figures 5-9",
        ),
        pdf=f"{R}/figures/fgsmxai_fig{{n}}.pdf",
    wildcard_constraints:
        n="[5-9]",
    params:
        runs=FGSMXAI.run_params,
        settings=FGSMXAI.report_settings(),
        caption=FGSMXAI.caption,
        code=code("fgsmxai_figure.py"),
    log:
        f"{R}/logs/figures/fgsmxai_fig{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/fgsmxai_figure.py"


localrules:
    fgsmxai_table,
    fgsmxai_accuracy,
    fgsmxai_figure,
