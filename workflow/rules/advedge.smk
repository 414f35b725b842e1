# AdvEdge paper: inputs, the RTS saliency model, benign maps, the attacks (PGD, C&W, StAdv x
# ADV2, AdvEdge, AdvEdge+ x Grad, CAM, RTS, MASK, plus a plain PGD reference), their maps cached
# to Parquet, per-run scores, the transfer study (each attack's subset explained by the other
# interpreters), then Tables I, II, VII, VIII, the comparison table and Figures 1-7, 9-15.

ADV_RUN = f"{R}/{{dataset}}/{{model}}/seed{{seed}}/advedge"


rule advedge_inputs:
    input:
        unpack(PLAN.data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
    output:
        inputs=f"{ADV_RUN}/inputs.npz",
        record=f"{ADV_RUN}/inputs.json",
    params:
        settings=ADVEDGE.inputs_settings(),
        code=code("advedge_inputs.py"),
    log:
        f"{R}/logs/advedge_inputs/{{dataset}}-{{model}}-seed{{seed}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=30,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_inputs.py"


rule advedge_train_rts:
    input:
        unpack(PLAN.data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
    output:
        model=f"{ADV_RUN}/rts.pt",
        history=f"{ADV_RUN}/rts_history.csv",
    params:
        settings=ADVEDGE.rts_settings(),
        code=code("advedge_train_rts.py"),
    log:
        f"{R}/logs/advedge_train_rts/{{dataset}}-{{model}}-seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/advedge_train_rts/{{dataset}}-{{model}}-seed{{seed}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=240,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_train_rts.py"


rule advedge_benign_maps:
    input:
        unpack(PLAN.data_files),
        unpack(planned(ADVEDGE.needs_rts)),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
        inputs=f"{ADV_RUN}/inputs.npz",
    output:
        f"{ADV_RUN}/benign/{{interp}}.parquet",
    params:
        settings=ADVEDGE.interpreter_settings,
        code=code("advedge_maps.py"),
    log:
        f"{R}/logs/advedge_benign_maps/{{dataset}}-{{model}}-seed{{seed}}-{{interp}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=60,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_maps.py"


rule advedge_attack:
    input:
        unpack(PLAN.data_files),
        unpack(planned(ADVEDGE.needs_rts)),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
        inputs=f"{ADV_RUN}/inputs.npz",
    output:
        adv=f"{ADV_RUN}/{{advfw}}-{{advint}}-{{advvar}}/adv.npz",
        record=f"{ADV_RUN}/{{advfw}}-{{advint}}-{{advvar}}/attack.json",
    params:
        settings=ADVEDGE.attack_settings,
        code=code("advedge_attack.py"),
    log:
        f"{R}/logs/advedge_attack/{{dataset}}-{{model}}-seed{{seed}}-{{advfw}}-{{advint}}-{{advvar}}.log",
    benchmark:
        f"{R}/benchmarks/advedge_attack/{{dataset}}-{{model}}-seed{{seed}}-{{advfw}}-{{advint}}-{{advvar}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=600,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_attack.py"


rule advedge_adv_maps:
    input:
        unpack(PLAN.data_files),
        unpack(planned(ADVEDGE.needs_rts)),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
        inputs=f"{ADV_RUN}/inputs.npz",
        adv=f"{ADV_RUN}/{{advfw}}-{{advint}}-{{advvar}}/adv.npz",
    output:
        f"{ADV_RUN}/{{advfw}}-{{advint}}-{{advvar}}/maps-{{interp}}.parquet",
    params:
        settings=ADVEDGE.interpreter_settings,
        code=code("advedge_maps.py"),
    log:
        f"{R}/logs/advedge_adv_maps/{{dataset}}-{{model}}-seed{{seed}}-{{advfw}}-{{advint}}-{{advvar}}-{{interp}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=60,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_maps.py"


rule advedge_transfer_maps:
    input:
        unpack(PLAN.data_files),
        unpack(ADVEDGE.transfer_needs_rts),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
        inputs=f"{ADV_RUN}/inputs.npz",
        adv=f"{ADV_RUN}/{{advfw}}-{{advint}}-{{advvar}}/adv.npz",
    output:
        directory(f"{ADV_RUN}/{{advfw}}-{{advint}}-{{advvar}}/transfer"),
    params:
        settings=ADVEDGE.transfer_settings,
        code=code("advedge_maps.py"),
    log:
        f"{R}/logs/advedge_transfer_maps/{{dataset}}-{{model}}-seed{{seed}}-{{advfw}}-{{advint}}-{{advvar}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=60,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_maps.py"


rule advedge_scores:
    input:
        unpack(PLAN.data_files),
        unpack(ADVEDGE.scores_inputs),
    output:
        f"{ADV_RUN}/scores.parquet",
    params:
        settings=ADVEDGE.report_settings(),
        code=code("advedge_scores.py"),
    log:
        f"{R}/logs/advedge_scores/{{dataset}}-{{model}}-seed{{seed}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_scores.py"


rule advedge_transfer_scores:
    input:
        unpack(PLAN.data_files),
        unpack(ADVEDGE.transfer_inputs),
    output:
        f"{ADV_RUN}/transfer.parquet",
    params:
        settings=ADVEDGE.transfer_settings,
        code=code("advedge_scores.py"),
    log:
        f"{R}/logs/advedge_transfer_scores/{{dataset}}-{{model}}-seed{{seed}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_scores.py"


rule advedge_table:
    input:
        ADVEDGE.table_inputs,
    output:
        csv=report(
            f"{R}/tables/advedge_{{name}}.csv",
            caption="../report/caption.rst",
            category="AdvEdge paper",
            subcategory="Tables",
        ),
        md=f"{R}/tables/advedge_{{name}}.md",
    wildcard_constraints:
        name="table1|table2|table3|table4|table5|table6|table7|table8|table11|comparison",
    params:
        runs=ADVEDGE.run_params,
        caption=ADVEDGE.caption,
        code=code("advedge_table.py"),
    log:
        f"{R}/logs/tables/advedge_{{name}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_table.py"


rule advedge_box_figure:
    input:
        planned(ADVEDGE.box_inputs),
    output:
        png=report(
            f"{R}/figures/advedge_fig{{n}}.png",
            caption="../report/caption.rst",
            category="AdvEdge paper",
            subcategory="Figures 3-5, 10-15",
        ),
        pdf=f"{R}/figures/advedge_fig{{n}}.pdf",
    wildcard_constraints:
        n="3|4|5|10|11|12|13|14|15",
    params:
        runs=ADVEDGE.run_params,
        caption=ADVEDGE.caption,
        code=code("advedge_figure.py"),
    log:
        f"{R}/logs/figures/advedge_fig{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_figure.py"


rule advedge_example_figure:
    input:
        unpack(planned(ADVEDGE.example_inputs)),
    output:
        png=report(
            f"{R}/figures/advedge_fig{{n}}.png",
            caption="../report/caption.rst",
            category="AdvEdge paper",
            subcategory="Figures 1, 2, 9",
        ),
        pdf=f"{R}/figures/advedge_fig{{n}}.pdf",
    wildcard_constraints:
        n="1|2|9",
    params:
        run=planned(ADVEDGE.example_params),
        settings=ADVEDGE.example_settings(),
        caption=ADVEDGE.caption,
        code=code("advedge_figure.py"),
    log:
        f"{R}/logs/figures/advedge_fig{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_figure.py"


rule advedge_run_figure:
    input:
        unpack(planned(ADVEDGE.run_figure_inputs)),
    output:
        png=report(
            f"{R}/figures/advedge_fig{{n}}.png",
            caption="../report/caption.rst",
            category="AdvEdge paper",
            subcategory="Figures 6, 7",
        ),
        pdf=f"{R}/figures/advedge_fig{{n}}.pdf",
    wildcard_constraints:
        n="6|7",
    params:
        run=planned(ADVEDGE.figure_run_params),
        settings=ADVEDGE.figure_settings,
        caption=ADVEDGE.caption,
        code=code("advedge_figure.py"),
    log:
        f"{R}/logs/figures/advedge_fig{{n}}.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_figure.py"


localrules:
    advedge_scores,
    advedge_transfer_scores,
    advedge_run_figure,
    advedge_table,
    advedge_box_figure,
    advedge_example_figure,
