# Clean training: one job per dataset x model x seed, then its clean accuracy with its own
# BatchNorm and with each evaluation-time defense.


rule train_clean:
    input:
        unpack(data_files),
    wildcard_constraints:
        model=_alternatives(TRAINED_MODELS),
    output:
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
        metrics=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/metrics.csv",
        provenance=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/provenance.json",
    params:
        train=train_params,
        model=model_config,
        code=code_version("models", "train", "datasets", "tasks"),
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
        unpack(data_files),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
        meta=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.json",
    output:
        f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/accuracy.json",
    params:
        evaluation=config["evaluation"],
        code=code_version("models", "defenses", "evaluate", "train", "tasks"),
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
        model=_alternatives(PRETRAINED_MODELS),
    params:
        model=model_config,
        code=code_version("imagenet", "models", "tasks"),
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
