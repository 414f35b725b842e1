"""Configuration: validation against the JSON schema, defaults, and derived settings.

The workflow calls :func:`load_and_validate` at start-up, before any job: a wrong key or value
stops the run with a message naming the key (``config key 'clean.train.epochs': ...``).
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml
from jsonschema import Draft7Validator, validators

#: shipped as package data (a non-editable install validates too); workflow/schemas/ links here
SCHEMA_PATH = Path(__file__).resolve().parent / "resources" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key."""


def _with_defaults(cls):
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


_DefaultingValidator = _with_defaults(Draft7Validator)


def load_schema(path: str | Path | None = None) -> dict:
    with open(path or SCHEMA_PATH) as f:
        return yaml.safe_load(f)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _check(instance, schema, root_schema, prefix=()):
    """Validate (filling defaults); raise ConfigError naming the first bad key."""
    resolver_schema = dict(schema)
    resolver_schema.setdefault("definitions", root_schema.get("definitions", {}))
    errors = sorted(_DefaultingValidator(resolver_schema).iter_errors(instance),
                    key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        e = errors[0]
        path = (*prefix, *e.path)
        msg = e.message
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            if extra:
                path, msg = (*path, extra[0]), f"unknown key (allowed: {', '.join(sorted(e.schema.get('properties', {})))})"
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"config key '{_key(path)}': {msg}{more}")


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def validate(config: dict, schema: dict | None = None) -> dict:
    """Validate ``config`` in place (defaults filled in) and check cross-references."""
    schema = schema or load_schema()
    # a partial `advedge.<interpreter>` keeps that interpreter's own defaults (CAM's schedule is
    # not Grad's), which a `$ref`'d definition alone would not
    adv = config.get("advedge")
    if isinstance(adv, dict):
        props = schema["properties"]["advedge"]["properties"]
        sections = [(adv, props)] + [(adv[fw], props[fw]["properties"]) for fw in ("cw", "stadv")
                                     if isinstance(adv.get(fw), dict)]
        for sec, sec_props in sections:
            for interp in ("grad", "cam", "rts", "mask"):
                if isinstance(sec.get(interp), dict):
                    sec[interp] = _deep_merge(sec_props[interp].get("default", {}), sec[interp])
    _check(config, schema, schema)
    # a partial `backdoor.hyper` changes only the entries it names
    hyper_default = schema["properties"]["backdoor"]["properties"]["hyper"]["default"]
    config["backdoor"]["hyper"] = _deep_merge(hyper_default, config["backdoor"]["hyper"])
    train_schema = schema["definitions"]["train"]
    for ds, over in config["clean"]["overrides"].items():
        merged = {**config["clean"]["train"], **over}
        _check(merged, train_schema, schema, prefix=("clean", "overrides", ds))
    from xaisec.catalog import IMAGENET_ARCHS

    for i, ds in enumerate(config["clean"]["datasets"]):
        if ds == "imagenet":
            raise ConfigError(f"config key 'clean.datasets.{i}': imagenet cannot be trained on "
                              "(evaluation images only); use pretrained ImageNet models")
    for key, m in config["models"].items():
        if m.get("train"):
            _check({**config["clean"]["train"], **m["train"]}, train_schema, schema,
                   prefix=("models", key, "train"))
        init = m.get("init")
        if init is not None:
            if init not in config["models"] or init == key:
                raise ConfigError(f"config key 'models.{key}.init': {init!r} is not another "
                                  f"model under 'models' (defined: {', '.join(config['models'])})")
            if config["models"][init]["arch"] != m["arch"]:
                raise ConfigError(f"config key 'models.{key}.init': {init!r} is a "
                                  f"{config['models'][init]['arch']}, {key!r} a {m['arch']}; "
                                  "fine-tuning needs the same architecture")
            if m["arch"] in IMAGENET_ARCHS:
                raise ConfigError(f"config key 'models.{key}.init': pretrained ImageNet "
                                  "networks are not trained")
        if m.get("defense"):
            _check_training_defense(m["defense"], ("models", key, "defense"))
    for i, key in enumerate(config["clean"]["models"]):
        if key in config["models"] and config["models"][key]["arch"] in IMAGENET_ARCHS:
            raise ConfigError(f"config key 'clean.models.{i}': {key!r} is a pretrained ImageNet "
                              "network; it is loaded, not trained (list it under fgsmxai/exiaa "
                              "models instead)")
        if key not in config["models"]:
            raise ConfigError(
                f"config key 'clean.models.{i}': model {key!r} is not defined under 'models' "
                f"(defined: {', '.join(config['models']) or 'none'})")
    _check_advedge_models(config)
    for i, exp in enumerate(config["backdoor"]["experiments"]):
        for j, key in enumerate(exp.get("models", [])):
            _model_defined(config, key, f"backdoor.experiments.{i}.models.{j}")
    for section in ("fgsmxai", "exiaa"):
        for i, key in enumerate(config[section]["models"]):
            _model_defined(config, key, f"{section}.models.{i}")
    for i, key in enumerate(config["backdoor"]["scenarios"]["models"]):
        _model_defined(config, key, f"backdoor.scenarios.models.{i}")
    for path in (("backdoor", "tables", "model"), ("backdoor", "ablation", "model"),
                 ("backdoor", "examples", "model")):
        _model_defined(config, config[path[0]][path[1]][path[2]], ".".join(path))
    for group in ("resnet", "vgg"):
        for regime, key in config["backdoor"]["weights"][group].items():
            _model_defined(config, key, f"backdoor.weights.{group}.{regime}")
    _check_batches(config)
    return config


def _check_advedge_models(config: dict) -> None:
    """The model keys AdvEdge part 3 names (Table XI's AT models, the detector's backbone,
    Table VI's and Table III's models) are defined, when AdvEdge has runs."""
    a = config["advedge"]
    if not a["datasets"] or not a["models"] or not a["seeds"]:
        return
    for m, at in a["defenses"]["adversarial"].items():
        if m not in a["models"]:
            continue
        _model_defined(config, at, f"advedge.defenses.adversarial.{m}")
        if config["models"][at].get("defense", {}).get("name") != "adversarial":
            raise ConfigError(f"config key 'advedge.defenses.adversarial.{m}': {at!r} is not "
                              "trained with defense {name: adversarial}")
    from xaisec.papers.advedge.targets import AdvedgeTargets

    t = AdvedgeTargets(config)
    det = a["detector"]
    if t.detector_enabled() and not det["backbone"]["weights"]:
        if any(d != "imagenet" for d in a["datasets"]):
            _model_defined(config, det["backbone"]["model"], "advedge.detector.backbone.model")
        if "imagenet" in a["datasets"]:
            _model_defined(config, det["backbone"]["imagenet_model"],
                           "advedge.detector.backbone.imagenet_model")
    if t.robust_runs():
        _model_defined(config, a["robust"]["normal"], "advedge.robust.normal")
        _model_defined(config, a["robust"]["robust"], "advedge.robust.robust")
    if t.blackbox_runs():
        _model_defined(config, a["blackbox"]["target"], "advedge.blackbox.target")


def _model_defined(config: dict, key: str, where: str) -> None:
    if key not in config["models"]:
        raise ConfigError(f"config key '{where}': model {key!r} is not defined under 'models' "
                          f"(defined: {', '.join(config['models']) or 'none'})")


def _check_batches(config: dict) -> None:
    """Batch sizes that cannot fill one batch from the images drawn (checked before any job:
    found after training, such a setting used to cost the previous output)."""
    ev = config["evaluation"]
    if ev["n_samples"] is not None and ev["batch_size"] > ev["n_samples"]:
        raise ConfigError(f"config key 'evaluation.batch_size': {ev['batch_size']} is larger than "
                          f"evaluation.n_samples ({ev['n_samples']}): no whole batch to evaluate")
    ab = config["backdoor"]["ablation"]
    for i, b in enumerate(ab["batch_sizes"]):
        if b > ab["n_samples"]:
            raise ConfigError(f"config key 'backdoor.ablation.batch_sizes.{i}': {b} is larger "
                              f"than backdoor.ablation.n_samples ({ab['n_samples']})")


def load_and_validate(path_or_dict, schema: dict | None = None) -> dict:
    if isinstance(path_or_dict, (str, Path)):
        with open(path_or_dict) as f:
            config = yaml.safe_load(f) or {}
    else:
        config = copy.deepcopy(path_or_dict)
    return validate(config, schema)


def train_settings(config: dict, dataset: str, model: str | None = None) -> dict:
    """The clean-training recipe for ``dataset`` (``clean.train`` with its override) and
    ``model`` (then ``models.<model>.train``)."""
    model_over = config["models"].get(model, {}).get("train", {}) if model else {}
    return {**config["clean"]["train"], **config["clean"]["overrides"].get(dataset, {}),
            **model_over}


def _check_training_defense(d: dict, prefix: tuple) -> None:
    """A training defense's settings are the keyword arguments of its class (listed, torch-free,
    in its registry entry): an unknown one is a config error naming the accepted ones."""
    from xaisec.defenses import spec

    accepted = spec(d["name"]).settings
    for k in d:
        if k != "name" and k not in accepted:
            raise ConfigError(f"config key '{'.'.join(prefix)}.{k}': not a setting of training "
                              f"defense {d['name']!r} (settings: {', '.join(accepted)})")
