# Data: download (or take a local copy of) each real data set, then write one canonical
# compact form per data set: uint8 images, labels, ground-truth masks, manifest.


rule fetch_data:
    output:
        record=f"{R}/data/{{real_dataset}}/raw.json",
    params:
        source=data_source,
        checksum=data_checksum,
        raw_dir=raw_dir,
        code=code_version("datasets"),
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
        unpack(prepare_inputs),
    output:
        train=f"{R}/data/{{dataset}}/train.npz",
        test=f"{R}/data/{{dataset}}/test.npz",
        manifest=f"{R}/data/{{dataset}}/manifest.json",
    wildcard_constraints:
        dataset="cifar10|cifar100|gtsrb|shapes",
    params:
        image_size=config["data"]["image_size"],
        shapes=config["data"]["shapes"],
        code=prepare_code_version,
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
        code=code_version("datasets", "tasks", "imagenet"),
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
