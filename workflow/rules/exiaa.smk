# EXIAA paper: one grid per (model, explainer, attack-image selection), then Table 1, Tables
# B.1-B.3 and Figures 2-5 and A.1, each its own target.


rule exiaa_grid:
    input:
        unpack(PLAN.data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
    output:
        f"{R}/{{dataset}}/{{model}}/seed{{seed}}/exiaa/{{exm}}-{{selection}}.parquet",
    params:
        settings=EXIAA.grid_settings,
        code=code("exiaa_grid.py"),
    log:
        f"{R}/logs/exiaa_grid/{{dataset}}-{{model}}-seed{{seed}}-{{exm}}-{{selection}}.log",
    benchmark:
        f"{R}/benchmarks/exiaa_grid/{{dataset}}-{{model}}-seed{{seed}}-{{exm}}-{{selection}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=240,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/exiaa_grid.py"


rule exiaa_table:
    input:
        EXIAA.table_inputs,
    output:
        csv=report(
            f"{R}/tables/exiaa_table{{t}}.csv",
            caption="../report/caption.rst",
            category="EXIAA paper",
            subcategory="Tables 1, B.1-B.3",
        ),
        md=f"{R}/tables/exiaa_table{{t}}.md",
    wildcard_constraints:
        t="1|B1|B2|B3",
    params:
        caption=EXIAA.caption,
        code=code("exiaa_table.py"),
    log:
        f"{R}/logs/tables/exiaa_table{{t}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/exiaa_table.py"


rule exiaa_figure:
    input:
        EXIAA.figure_inputs,
    output:
        png=report(
            f"{R}/figures/exiaa_fig{{f}}.png",
            caption="../report/caption.rst",
            category="EXIAA paper",
            subcategory="Figures 2-5, A.1",
        ),
        pdf=f"{R}/figures/exiaa_fig{{f}}.pdf",
    wildcard_constraints:
        f="2|3|4|5|A1",
    params:
        caption=EXIAA.caption,
        code=code("exiaa_figure.py"),
    log:
        f"{R}/logs/figures/exiaa_fig{{f}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/exiaa_figure.py"


localrules:
    exiaa_table,
    exiaa_figure,
