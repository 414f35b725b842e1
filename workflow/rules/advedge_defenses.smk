# AdvEdge paper, part 3 (docs/settings.md#advedge): the attacks against defended systems
# (Table XI: median smoothing, bit squeezing, adversarial training), the interpretation-ensemble
# detector (Tables IV, V), interpretation-based robust training (Table VI) and the black-box
# transfer stand-in (Table III). The adversarially and robustly trained models are models
# entries with `defense` (and `init`) trained by rule train_clean.


rule advedge_defended_attack:
    input:
        unpack(PLAN.data_files),
        unpack(planned(ADVEDGE.defended_model)),
        inputs=f"{ADV_RUN}/inputs.npz",
    output:
        adv=f"{ADV_RUN}/defended/{{advdef}}/{{advfw}}-{{advint}}-{{advvar}}/adv.npz",
        record=f"{ADV_RUN}/defended/{{advdef}}/{{advfw}}-{{advint}}-{{advvar}}/attack.json",
    params:
        settings=ADVEDGE.defended_attack_settings,
        code=code("advedge_attack.py"),
    log:
        f"{R}/logs/advedge_defended_attack/{{dataset}}-{{model}}-seed{{seed}}-{{advdef}}-{{advfw}}-{{advint}}-{{advvar}}.log",
    benchmark:
        f"{R}/benchmarks/advedge_defended_attack/{{dataset}}-{{model}}-seed{{seed}}-{{advdef}}-{{advfw}}-{{advint}}-{{advvar}}.tsv"
    threads: 2
    resources:
        gpu=1,
        runtime=600,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_attack.py"


rule advedge_defense_scores:
    input:
        unpack(PLAN.data_files),
        unpack(ADVEDGE.defense_inputs),
    output:
        f"{ADV_RUN}/defenses.parquet",
    params:
        settings=ADVEDGE.defense_settings,
        code=code("advedge_defenses.py"),
    log:
        f"{R}/logs/advedge_defense_scores/{{dataset}}-{{model}}-seed{{seed}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=60,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_defenses.py"


rule advedge_detector_maps:
    input:
        unpack(PLAN.data_files),
        unpack(planned(ADVEDGE.detector_map_inputs)),
        model=f"{R}/{{dataset}}/{{model}}/seed{{seed}}/clean/model.pt",
    output:
        directory(f"{ADV_RUN}/detector"),
    params:
        settings=ADVEDGE.detector_map_settings,
        code=code("advedge_defenses.py"),
    log:
        f"{R}/logs/advedge_detector_maps/{{dataset}}-{{model}}-seed{{seed}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=240,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_defenses.py"


rule advedge_detector_scores:
    input:
        unpack(PLAN.data_files),
        unpack(planned(ADVEDGE.detector_inputs)),
    output:
        f"{ADV_RUN}/detector.parquet",
    params:
        settings=ADVEDGE.detector_settings,
        code=code("advedge_defenses.py"),
    log:
        f"{R}/logs/advedge_detector_scores/{{dataset}}-{{model}}-seed{{seed}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_defenses.py"


rule advedge_robust_scores:
    input:
        unpack(PLAN.data_files),
        unpack(ADVEDGE.robust_inputs),
    output:
        f"{R}/{{dataset}}/advedge_robust/seed{{seed}}/robust.parquet",
    params:
        settings=ADVEDGE.robust_settings,
        code=code("advedge_defenses.py"),
    log:
        f"{R}/logs/advedge_robust_scores/{{dataset}}-seed{{seed}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_defenses.py"


rule advedge_blackbox:
    input:
        unpack(PLAN.data_files),
        unpack(planned(ADVEDGE.blackbox_inputs)),
    output:
        f"{ADV_RUN}/blackbox-{{target}}.parquet",
    wildcard_constraints:
        target=alternatives(config["models"]),
    params:
        settings=ADVEDGE.blackbox_settings,
        code=code("advedge_defenses.py"),
    log:
        f"{R}/logs/advedge_blackbox/{{dataset}}-{{model}}-seed{{seed}}-{{target}}.log",
    threads: 2
    resources:
        gpu=1,
        runtime=60,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/advedge_defenses.py"
