# Tables: each its own target, CSV and Markdown, collected by `snakemake --report`.


rule table_clean_accuracy:
    input:
        PLAN.clean_accuracy_inputs,
    output:
        csv=report(
            f"{R}/tables/clean_accuracy.csv",
            caption="../report/clean_accuracy.rst",
            category="Clean models",
        ),
        md=f"{R}/tables/clean_accuracy.md",
    params:
        code=code("table_clean_accuracy.py"),
    log:
        f"{R}/logs/tables/clean_accuracy.log",
    conda:
        "../../environment.yml"
    script:
        "../../scripts/table_clean_accuracy.py"


# Tables only read small files: run them on the submitting host, never as cluster jobs.
localrules:
    table_clean_accuracy,
