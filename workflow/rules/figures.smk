# Figures: each its own target, PNG and PDF, collected by `snakemake --report`.


rule figure_training_curves:
    input:
        PLAN.training_metrics_inputs,
    output:
        png=report(
            f"{R}/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="Clean models",
        ),
        pdf=f"{R}/figures/training_curves.pdf",
    params:
        labels=PLAN.training_labels(),
        code=code("figure_training_curves.py"),
    log:
        f"{R}/logs/figures/training_curves.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/figure_training_curves.py"


localrules:
    figure_training_curves,
