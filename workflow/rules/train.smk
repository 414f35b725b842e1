# Clean training: one job per dataset x model x seed, then its clean accuracy with its own
# BatchNorm and with each evaluation-time defense.


rule train_clean:
    input:
        unpack(PLAN.data_files),
        unpack(PLAN.init_model),
    wildcard_constraints:
        model=alternatives(PLAN.trained_models),
        dataset="cifar10|cifar100|gtsrb|shapes",
    output:
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
        metrics=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/metrics.csv",
        provenance=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/provenance.json",
    params:
        train=PLAN.train_params,
        model=PLAN.model_config,
        code=code("train_clean.py"),
    log:
        f"{R}/logs/train_clean/{{dataset}}-{{model}}-seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/train_clean/{{dataset}}-{{model}}-seed{{seed}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=600,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/train_clean.py"


rule evaluate_clean:
    input:
        unpack(PLAN.data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
    output:
        f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/accuracy.json",
    params:
        evaluation=PLAN.clean_evaluation(),
        code=code("evaluate_clean.py"),
    log:
        f"{R}/logs/evaluate_clean/{{dataset}}-{{model}}-seed{{seed}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=30,
        mem_mb=4000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/evaluate_clean.py"


# ImageNet networks (FGSM-XAI, EXIAA) are not trained: their pretrained weights (torchvision, or
# a local state-dict file) are written as this project's checkpoint. Needs the network once,
# unless the weights file is local or already in $TORCH_HOME.
rule pretrained_model:
    output:
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
        provenance=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/provenance.json",
    wildcard_constraints:
        model=alternatives(PLAN.pretrained_models),
        dataset="imagenet",
    params:
        model=PLAN.model_config,
        code=code("pretrained_model.py"),
    log:
        f"{R}/logs/pretrained_model/{{dataset}}-{{model}}-seed{{seed}}.log",
    resources:
        runtime=30,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/pretrained_model.py"


localrules:
    pretrained_model,
