# Config validation, wildcard constraints and the plan objects whose methods the rules call.
# Everything here is torch-free: the target lists and specifications live in
# lib/xaisec/workflow/plan.py (shared) and lib/xaisec/papers/<paper>/targets.py.
import sys
from pathlib import Path

# The repository's lib/ comes first, before any installed copy of xaisec (the scripts do the
# same through scripts/_lib.py), so the code hashes describe the code that runs.
LIB_ROOT = str(Path(workflow.basedir).parent / "lib")
if LIB_ROOT in sys.path:
    sys.path.remove(LIB_ROOT)
sys.path.insert(0, LIB_ROOT)

from xaisec.catalog import CFN_ATTACKS, CFN_EXPLAINERS, CFN_LOSSES, DATASETS, REAL_DATASETS
from xaisec.config import ConfigError, validate
from xaisec.defenses import names as defense_names
from xaisec.papers.advedge.targets import AdvedgeTargets
from xaisec.papers.cfn.targets import CfnTargets
from xaisec.papers.exiaa.targets import ExiaaTargets
from xaisec.papers.fgsmxai.targets import FgsmxaiTargets
from xaisec.workflow.codehash import code_hash
from xaisec.workflow.plan import Plan, PlanError, alternatives

try:
    validate(config)
except ConfigError as e:
    raise WorkflowError(str(e)) from None

R = config["results"]
PLAN = Plan(config)
CFN = CfnTargets(config)
FGSMXAI = FgsmxaiTargets(config)
EXIAA = ExiaaTargets(config)
ADVEDGE = AdvedgeTargets(config)
SCRIPTS = Path(workflow.basedir).parent / "scripts"
RUN_RE = f"({'|'.join(CFN_ATTACKS)})-({'|'.join(CFN_EXPLAINERS)})-({'|'.join(CFN_LOSSES)})"


wildcard_constraints:
    dataset="|".join(DATASETS),
    attack="|".join(CFN_ATTACKS),
    explainer="|".join(CFN_EXPLAINERS),
    loss="|".join(CFN_LOSSES),
    defense="|".join(defense_names(kind="model")),
    source=f"clean|backdoor/{RUN_RE}",
    real_dataset="|".join(REAL_DATASETS),
    model=alternatives(config["models"]),
    seed=r"\d+",
    variant="clean|fgsm|bim",
    fxm="smoothgrad|gradcam|lime",
    exm="saliency|ig|deepliftshap",
    selection="runnerup|others|top|low",
    scenario="c3|c5",
    n=r"\d+",
    interp="grad|cam|rts|mask",
    advfw="pgd|cw|stadv",
    advint="grad|cam|rts|mask|none",
    advvar="adv2|advedge|advedge\+|plain",
    advdef="|".join(defense_names(kind="input") + ("adversarial",)),


def code(script):
    """The code param of a rule: its script and the lib/ modules the script can import."""
    return code_hash(SCRIPTS / script)


def planned(fn):
    """An input function whose PlanError (a target the config cannot build) stops the run
    with its message instead of a traceback."""

    def wrapper(wildcards):
        try:
            return fn(wildcards)
        except PlanError as e:
            raise WorkflowError(str(e)) from None

    return wrapper


def all_targets():
    return (PLAN.clean_targets() + CFN.targets() + FGSMXAI.targets() + EXIAA.targets()
            + ADVEDGE.targets())


onstart:
    # Provenance of the whole run: the resolved config and the software that ran it.
    from xaisec.io import provenance, write_json

    write_json(
        Path(R) / "provenance" / "workflow.json",
        provenance(config, extra={"targets": all_targets()}),
    )
