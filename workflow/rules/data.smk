# Data: download (or take a local copy of) each real data set, then write one canonical
# compact form per data set: uint8 images, labels, ground-truth masks, manifest.
# A local data.<ds>.source is an input of fetch_data and its signature (size and mtime_ns of
# an archive, of every file of a folder) a param: a replaced archive is fetched again, also one
# copied back with an older mtime (cp -p). The official download: neither.


rule fetch_data:
    input:
        unpack(PLAN.fetch_inputs),
    output:
        record=f"{R}/data/{{real_dataset}}/raw.json",
    params:
        source=PLAN.data_source,
        checksum=PLAN.data_checksum,
        source_signature=PLAN.source_signature,
        raw_dir=PLAN.raw_dir,
        code=code("fetch_data.py"),
    log:
        f"{R}/logs/fetch_data/{{real_dataset}}.log",
    resources:
        runtime=120,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/fetch_data.py"


rule prepare_data:
    input:
        unpack(PLAN.prepare_inputs),
    output:
        train=f"{R}/data/{{dataset}}/train.npz",
        test=f"{R}/data/{{dataset}}/test.npz",
        manifest=f"{R}/data/{{dataset}}/manifest.json",
    wildcard_constraints:
        dataset="cifar10|cifar100|gtsrb|shapes",
    params:
        image_size=config["data"]["image_size"],
        shapes=PLAN.shapes_settings,
        code=code("prepare_data.py"),
    log:
        f"{R}/logs/prepare_data/{{dataset}}.log",
    benchmark:
        f"{R}/benchmarks/prepare_data/{{dataset}}.tsv"
    threads: 2
    resources:
        runtime=60,
        mem_mb=8000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/prepare_data.py"


# ImageNet (FGSM-XAI, EXIAA): a user-supplied folder of evaluation images (and masks), no
# training split; resized to 256 and centre-cropped to 224.
rule prepare_imagenet:
    input:
        record=f"{R}/data/imagenet/raw.json",
    output:
        test=f"{R}/data/imagenet/test.npz",
        manifest=f"{R}/data/imagenet/manifest.json",
    params:
        code=code("prepare_imagenet.py"),
    log:
        f"{R}/logs/prepare_data/imagenet.log",
    threads: 2
    resources:
        runtime=60,
        mem_mb=16000,
    conda:
        "../../environment.yml"
    script:
        "../../scripts/prepare_imagenet.py"


# Downloads need the network, which cluster compute nodes often lack: run them on the host.
localrules:
    fetch_data,
