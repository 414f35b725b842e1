# Explanation-aware backdoor fine-tuning: one job per dataset x model x seed x attack x
# explainer x loss, starting from that seed's clean model.


rule finetune_backdoor:
    input:
        unpack(PLAN.data_files),
        clean_model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        clean_meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
    output:
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/model.json",
        metrics=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/metrics.csv",
        provenance=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/backdoor/{{attack}}-{{explainer}}-{{loss}}/provenance.json",
    params:
        finetune=config["backdoor"]["finetune"],
        hyper=CFN.hyper,
        xai=CFN.xai,
        code=code("finetune_backdoor.py"),
    log:
        f"{R}/logs/finetune_backdoor/{{dataset}}-{{model}}-seed{{seed}}-{{attack}}-{{explainer}}-{{loss}}.log",
    benchmark:
        f"{R}/benchmarks/finetune_backdoor/{{dataset}}-{{model}}-seed{{seed}}-{{attack}}-{{explainer}}-{{loss}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=600,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/finetune_backdoor.py"
