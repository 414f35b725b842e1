# Explanation cache: a model (clean original or backdoored) under one defense, explained on
# the clean and the triggered evaluation images, written to Parquet. Everything downstream
# reads these files; nothing recomputes explanations.


rule explain:
    input:
        unpack(PLAN.data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/{{source}}/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/{{source}}/model.json",
    output:
        clean=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/{{source}}/cache/{{defense}}-{{explainer}}-clean.parquet",
        triggered=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/{{source}}/cache/{{defense}}-{{explainer}}-triggered.parquet",
    params:
        evaluation=CFN.explain_evaluation(),
        trigger=CFN.trigger(),
        xai=CFN.xai,
        code=code("explain.py"),
    log:
        f"{R}/logs/explain/{{dataset}}-{{model}}-seed{{seed}}-{{source}}-{{defense}}-{{explainer}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=60,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/explain.py"
