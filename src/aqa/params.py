"""Load params.yaml and validate it: the schema, then the cross-key checks it cannot express.

Every stage calls `load_params` first (the Snakefile too, and `aqa check-params`, the DVC stage
before all others), so a wrong key, type or range fails early, in one line naming the key.
The file is read as YAML 1.2, as DVC reads it, so both see the same values (`1e-3` is a number).
"""

from __future__ import annotations

import difflib
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from aqa.cluster import thread_errors
from aqa.errors import AqaError
from aqa.trained import DN, listed

MAX_REPORTED = 12  # errors listed in one message; the rest are counted


class ParamsError(AqaError):
    """params.yaml is missing, unreadable or does not match the schema."""


# --------------------------------------------------------------------------- reading


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans, integers and floats, and no duplicate keys.

    PyYAML follows YAML 1.1, which reads `1e-3` as a string, `yes`/`on` as true, `010` as 8 and
    `1:30` as 90; DVC (ruamel.yaml, YAML 1.2) reads 0.001, "yes", "on", 10 and "1:30", and
    refuses a key given twice. One loader for the project keeps aqa, Snakemake and DVC agreeing.
    """


_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float"))
ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in {_BOOL, _INT, _FLOAT}]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ParamsLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
ParamsLoader.add_implicit_resolver(
    _INT, re.compile(r"^[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$"), list("-+0123456789"))
ParamsLoader.add_implicit_resolver(_FLOAT, re.compile(r"""^(?:
     [-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def _construct_int(loader: ParamsLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    base = {"0b": 2, "0o": 8, "0x": 16}.get(digits[:2], 10)  # a leading 0 alone is decimal in 1.2
    return sign * int(digits[2:] if base != 10 else digits, base)


def _construct_mapping(loader: ParamsLoader, node: yaml.MappingNode) -> dict:
    """A mapping that refuses a key given twice (PyYAML would keep the last one silently)."""
    loader.flatten_mapping(node)
    mapping: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in mapping
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, f"unhashable key {key!r}", key_node.start_mark)
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


ParamsLoader.add_constructor(_INT, _construct_int)
ParamsLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)


def read_yaml(text: str) -> Any:
    """Parse YAML text as params.yaml is parsed everywhere in the project (see ParamsLoader)."""
    return yaml.load(text, Loader=ParamsLoader)  # noqa: S506 -- a SafeLoader subclass


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what went wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return where + " ".join(str(problem).split())


# --------------------------------------------------------------------------- the schema


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The params schema shipped with the package (a copy of workflow/schemas/)."""
    text = resources.files("aqa").joinpath("params.schema.yaml").read_text()
    return yaml.safe_load(text)


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _schema_problems(err: jsonschema.ValidationError) -> list[str]:
    """One line per problem of a schema error, named by its dotted key."""
    where = _dotted(err.absolute_path)
    prefix = f"{where}." if where else ""
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = list(err.schema.get("properties", {}))
        lines = []
        for key in (k for k in err.instance if k not in known):
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            lines.append(f"{prefix}{key}: unknown key{hint}")
        return lines
    if err.validator == "required" and isinstance(err.instance, dict):
        return [f"{prefix}{key}: missing" for key in err.validator_value if key not in err.instance]
    return [f"{where or '<top level>'}: {err.message}"]


def _schema_errors(params: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: [str(p) for p in e.absolute_path])
    lines = [line for err in errors for line in _schema_problems(err)]
    return list(dict.fromkeys(lines))  # one "missing" line per key, however many errors repeat it


# --------------------------------------------------------------------------- cross-key checks


def consistency_errors(params: dict[str, Any]) -> list[str]:
    """What the schema cannot express: keys that must agree with each other. Needs a schema-valid dict."""
    ef, problems = params["extract_features"], []
    height, width = ef["resize"]
    if ef["crop"] > min(height, width):
        problems.append(f"extract_features.crop = {ef['crop']} exceeds extract_features.resize {ef['resize']}")
    needed = ef["snippet_length"] + ef["snippet_stride"] * (ef["num_snippets"] - 1)
    if needed > ef["num_frames"]:
        problems.append(
            f"extract_features: {ef['num_snippets']} snippets of {ef['snippet_length']} frames every "
            f"{ef['snippet_stride']} need {needed} frames, more than extract_features.num_frames = {ef['num_frames']}")
    # Transitions (convert_annotations) and features (extract_features) index the same sampled frames.
    scale = params["convert_annotations"]["num_frames"]
    if scale != ef["num_frames"]:
        problems.append(f"convert_annotations.num_frames = {scale} differs from extract_features.num_frames = "
                        f"{ef['num_frames']} (transitions and features must use the same sampled frames)")
    variants = params["train"]["variants"]
    problems += dataset_errors(params)
    table4 = params["make_report"]["table4_variant"]
    if table4 not in variants:
        problems.append(f"make_report.table4_variant = {table4!r} is not a key of train.variants "
                        f"({', '.join(variants)})")
    gaps = params["synthesize_videos"]["gap_frames"]
    if gaps[0] > gaps[1]:
        problems.append(f"synthesize_videos.gap_frames = {gaps}: expected [min, max]")
    return problems + mask_errors(params) + thread_errors(params) + lr_schedule_errors(params)


def mask_errors(params: dict[str, Any]) -> list[str]:
    """Real masks need the real frames they were drawn on: over the stand-in's footage they would
    outline no diver (and the stand-in's own masks would be dropped)."""
    ef = params["extract_frames"]
    return [f"extract_frames.masks_root.{dataset} is set but extract_frames.frames_root.{dataset} is null: "
            "real masks need the real frames they outline"
            for dataset, root in ef["masks_root"].items() if root is not None and ef["frames_root"][dataset] is None] \
        + fineparser_cache_errors(params)


def fineparser_cache_errors(params: dict[str, Any]) -> list[str]:
    """FineParser's cache additions (aqa.features.additions) with the resnet34 SVE backbone need its weights file."""
    fx = params["extract_features"]
    problems = []
    wanted = any(fx["fineparser"].get(d) not in (False, None) for d in params["datasets"]["run"])
    if wanted and fx["sve_backbone"] == "resnet34" and fx["sve_weights_path"] is None:
        problems.append("extract_features.sve_backbone = resnet34 needs extract_features.sve_weights_path "
                        "(torchvision's resnet34-b627a593.pth)")
    return problems + fineparser_variant_errors(params)


def fineparser_variant_errors(params: dict[str, Any]) -> list[str]:
    """A listed FineParser variant needs its dataset's cache additions, made with its SVE backbone
    (checked here, before any stage runs, rather than when training opens the cache)."""
    from aqa.models.fineparser_ablations import ABLATIONS

    fx, defined = params["extract_features"], params["train"]["variants"]
    problems = []
    for dataset in params["datasets"]["run"]:
        for name in listed(params, dataset):
            variant = defined.get(name, {})
            if variant.get("method") != "fineparser":
                continue
            key = "dn_only" if name in params["datasets"]["dn_only"].get(dataset, []) else "variants"
            problems += _tier_errors(params, name, f"train.variants.{name} (FineParser, in datasets.{key}.{dataset})")
            if fx["fineparser"].get(dataset) in (False, None):
                problems.append(f"datasets.{key}.{dataset} lists {name} (FineParser) but "
                                f"extract_features.fineparser.{dataset} is false: its cache would lack "
                                "mixed4f / sve / masks (set it to true)")
            ablation = variant.get("ablation")
            if ablation is not None and ablation not in ABLATIONS:
                problems.append(f"train.variants.{name}: ablation {ablation!r} is not one of {sorted(ABLATIONS)}")
                continue
            settings = {**ABLATIONS.get(ablation, {}), **variant}   # as the registry merges them
            backbone = settings.get("sve_backbone", "i3d2d")
            reads_sve = "sve" in settings.get("streams", ("i3d", "sve"))   # Table 3's A and C do not
            if reads_sve and backbone != fx["sve_backbone"]:
                problems.append(f"train.variants.{name} reads {backbone} SVE features but "
                                f"extract_features.sve_backbone = {fx['sve_backbone']}: the cache holds one "
                                "backbone's features")
    return problems


def _tier_errors(params: dict[str, Any], name: str, where: str) -> list[str]:
    """SAP's tier and the backbone go together (docs/METHODS.md D1): T2 reads the cache's Mixed_4f
    (the frozen I3D's), so cached; T1 reads the frames, which only the finetune path carries; T0
    (SVE's backbone trains too) is not built."""
    from aqa.models.fineparser_ablations import ABLATIONS

    variant = params["train"]["variants"][name]
    settings = {**ABLATIONS.get(variant.get("ablation"), {}), **variant}
    sap = settings.get("sap") if isinstance(settings.get("sap"), dict) else {}
    tier, backbone = sap.get("tier", "T2"), variant_backbone(params, name)
    if not settings.get("use_sap", True):
        return []
    if tier == "T0":
        return [f"{where}: sap.tier T0 is not built (SVE's backbone would train; the model reads the cache's "
                "SVE features): use T1 (train.backbone finetune) or T2 (cached)"]
    if tier == "T2" and backbone == "finetune":
        return [f"{where} with train.backbone = finetune: SAP at tier T2 reads the cache's Mixed_4f of the frozen "
                f"I3D; set train.variants.{name}.sap.tier: T1 (SAP from the frames) or "
                f"train.variants.{name}.train.backbone: cached"]
    if tier == "T1" and backbone != "finetune":
        return [f"{where}: sap.tier T1 reads the frames, which only train.backbone = finetune loads; set "
                f"train.variants.{name}.train.backbone: finetune (or sap.tier: T2)"]
    return []


def lr_schedule_errors(params: dict[str, Any]) -> list[str]:
    """train.lr_schedule (and a variant's own) takes its name's keys, and a warm-up/cosine's lr_min is at
    most each of the variant's base lrs (lr; lr_backbone when I3D trains; lr x FineParser's
    sap.head_lr_mult): a group below lr_min would be raised by the warm-up (aqa.train.lr_schedule)."""
    from aqa.train.lr_schedule import is_constant, schedule_problems

    problems = schedule_problems(params["train"]["lr_schedule"])
    for name, variant in params["train"]["variants"].items():
        own = variant.get("train") or {}
        where = f"train.variants.{name}.train.lr_schedule" if "lr_schedule" in own else "train.lr_schedule"
        cfg = {**params["train"], **own}
        schedule = cfg["lr_schedule"]
        keys = schedule_problems(schedule, where)
        if keys or is_constant(schedule):   # the global schedule's own problems are listed once, above
            problems += keys if "lr_schedule" in own else []
            continue
        sap = variant.get("sap") if isinstance(variant.get("sap"), dict) else {}
        mult = sap.get("head_lr_mult", 1.0)
        bases = {"train.lr": cfg["lr"]}
        if variant_backbone(params, name) == "finetune":
            bases["train.lr_backbone"] = cfg["lr_backbone"]
        if variant["method"] == "fineparser" and isinstance(mult, (int, float)) and mult != 1:
            bases[f"train.lr x sap.head_lr_mult {mult}"] = cfg["lr"] * mult
        below = [f"{key} = {value:g}" for key, value in bases.items() if value < schedule["lr_min"]]
        if below:
            problems.append(f"{where}.lr_min = {schedule['lr_min']:g} is above variant {name}'s {', '.join(below)}: "
                            "the warm-up would lower that lr and the cosine raise it")
    return problems


def variant_backbone(params: dict[str, Any], name: str) -> str:
    """The backbone variant `name` trains with: its own `train.backbone`, else params train.backbone."""
    own = params["train"]["variants"].get(name, {}).get("train") or {}
    return own.get("backbone", params["train"]["backbone"])


def dataset_errors(params: dict[str, Any]) -> list[str]:
    """The datasets' variant lists (datasets.variants, datasets.dn_only) name defined variants, only
    for datasets that run, each variant in one list; dn-only variants need the mode dn."""
    run, defined = params["datasets"]["run"], params["train"]["variants"]
    problems = []
    for key in ("variants", "dn_only"):
        for dataset, names in params["datasets"][key].items():
            unknown = [n for n in names if n not in defined]
            if unknown:
                problems.append(f"datasets.{key}.{dataset}: {', '.join(map(repr, unknown))} not a key of "
                                f"train.variants ({', '.join(defined)})")
            if names and dataset not in run:
                problems.append(f"datasets.{key}.{dataset} lists {names} but {dataset} is not in datasets.run "
                                f"{run}: add it to run, or list no variants ([])")
    for dataset, names in params["datasets"]["dn_only"].items():
        both = [n for n in names if n in params["datasets"]["variants"].get(dataset, [])]
        if both:
            problems.append(f"datasets.dn_only.{dataset}: {', '.join(both)} also in datasets.variants.{dataset}: "
                            "list a variant in one of them (dn_only trains w/ DN only, variants every mode)")
        if names and DN not in params["train"]["exemplar_modes"]:
            problems.append(f"datasets.dn_only.{dataset} lists {names} but train.exemplar_modes "
                            f"{params['train']['exemplar_modes']} has no {DN}: add {DN}, or list them in "
                            f"datasets.variants.{dataset}")
    for dataset in run:   # real frames are numbered by their own annotations: sampled ones cannot match
        if params["extract_frames"]["frames_root"].get(dataset) is not None and \
                params["synthesize_videos"][dataset]["source_annotations"] is None:
            problems.append(f"extract_frames.frames_root.{dataset} is set but synthesize_videos.{dataset}."
                            "source_annotations is null: real frames need their real annotation files")
    if "mtl_aqa" in run and params["convert_annotations"]["mtl_aqa_split"] != 0:
        problems.append(f"convert_annotations.mtl_aqa_split = {params['convert_annotations']['mtl_aqa_split']}: "
                        "synthesize_videos writes MTL-AQA's split 0 (the only split of the public info folder)")
    return problems


def validate_params(params: dict[str, Any], source: str = "params") -> None:
    """Refuse `params` (ParamsError, one line starting with `source`) unless every check passes."""
    problems = _schema_errors(params) or consistency_errors(params)
    if problems:
        shown = problems[:MAX_REPORTED]
        if len(problems) > MAX_REPORTED:
            shown.append(f"and {len(problems) - MAX_REPORTED} more")
        raise ParamsError(f"{source}: " + "; ".join(shown))


def load_params(path: str | Path, section: str | None = None) -> dict[str, Any]:
    """Read and validate the whole params file; return it, or one stage's section of it."""
    path = Path(path)
    try:
        params = read_yaml(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except IsADirectoryError:
        raise ParamsError(f"{path}: is a folder, expected the params file") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of stage sections at the top level")
    validate_params(params, source=str(path))
    return params if section is None else params[section]


# The output of `aqa check-params --out`, the DVC stage check_params that runs before all others
# whenever params.yaml changes. Fixed bytes (no time, path or hash), so a passing check leaves the stages after it as
# they were: they depend on this file only to run after the check, and track their own params.
CHECKED_STAMP = "params valid: the whole file passed the schema and the cross-key checks of aqa.params\n"


# Inputs from outside the pipeline that params name: (dotted key, what it must be); <dataset> stands
# for each dataset in datasets.run.
EXTERNAL_INPUTS = (("synthesize_videos.<dataset>.source_annotations", "folder"),
                   ("extract_frames.frames_root.<dataset>", "folder"), ("extract_frames.masks_root.<dataset>", "folder"),
                   ("fetch_i3d.weights_path", "file"), ("extract_features.sve_weights_path", "file"))


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        value = value[part]
    return value


def missing_inputs(params: dict[str, Any]) -> list[str]:
    """The external inputs params name that are not there (paths relative to the working directory)."""
    problems = []
    for pattern, kind in EXTERNAL_INPUTS:
        keys = ([pattern.replace("<dataset>", d) for d in params["datasets"]["run"]] if "<dataset>" in pattern
                else [pattern])
        for key in keys:
            problems += _missing(key, _lookup(params, key), kind)
    return problems


def _missing(key: str, value: Any, kind: str) -> list[str]:
    if value is None:
        return []
    target = Path(value)
    if target.is_dir() if kind == "folder" else target.is_file():
        return []
    found = "not a " + kind if target.exists() else "does not exist"
    return [f"{key} = {value!r}: {found}"]


def variant_errors(params: dict[str, Any]) -> list[str]:
    """Model settings of train.variants the registry would refuse at training time, and PSNet
    sizes that do not match the features (snippets) or the transitions' frame scale.

    Imports the models (torch), so `check_params` runs it, not every stage's `load_params`.
    """
    from aqa.models.registry import is_pairwise

    snippets = params["extract_features"]["num_snippets"]
    scale = params["convert_annotations"]["num_frames"]
    problems = []
    for name, variant in params["train"]["variants"].items():
        problems += _variant_errors(f"train.variants.{name}", variant, snippets, scale)
    table4 = params["make_report"]["table4_variant"]
    method = params["train"]["variants"].get(table4, {}).get("method")
    if method is not None and not is_pairwise(method):
        problems.append(f"make_report.table4_variant = {table4!r}: Table 4 varies the number of voting exemplars, "
                        f"and {method} predicts each dive directly (no exemplars); name a pairwise variant")
    return problems + step_label_errors(params)


def step_label_errors(params: dict[str, Any]) -> list[str]:
    """Variants listed for a dataset without step labels whose method needs them (F+S+R, TSA on MTL-AQA)."""
    from aqa.data.datasets import dataset_spec
    from aqa.models.registry import needs_step_labels

    problems = []
    for key in ("variants", "dn_only"):
        for dataset, names in params["datasets"][key].items():
            spec = dataset_spec(dataset)
            for name in names:
                method = params["train"]["variants"].get(name, {}).get("method")
                if method is not None and not spec.step_labels and needs_step_labels(method):
                    problems.append(f"datasets.{key}.{dataset}: {name} (method {method}) needs step labels, "
                                    f"which {spec.title} does not have")
    return problems


def _variant_errors(where: str, variant: dict[str, Any], snippets: int, scale: int) -> list[str]:
    from dataclasses import fields

    from aqa.models.psnet import PSNetConfig
    from aqa.models.registry import _NESTED, MODE_SETTINGS, config_fields

    settings = {k: v for k, v in variant.items() if k not in ("method", "train")}
    decided = MODE_SETTINGS.get(variant["method"], frozenset())
    accepted = config_fields(variant["method"]) - decided
    unknown = sorted(set(settings) - accepted)
    if unknown:
        if set(unknown) <= decided:
            return [f"{where}: {unknown} are set by the exemplar mode and the training pool for method "
                    f"{variant['method']} (docs/METHODS.md), not in params"]
        return [f"{where}: unknown model settings {unknown} for method {variant['method']} "
                f"(accepted: {', '.join(sorted(accepted))})"]
    for key, cls in _NESTED.items():
        if key in accepted and isinstance(settings.get(key), dict):
            unknown = sorted(set(settings[key]) - {f.name for f in fields(cls)})
            if unknown:
                return [f"{where}.{key}: unknown settings {unknown}"]
    sap = settings.get("sap") if "sap" in accepted else None
    mult = sap.get("head_lr_mult", 1.0) if isinstance(sap, dict) else 1.0
    if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not mult > 0:
        return [f"{where}.sap.head_lr_mult: must be a number > 0, got {mult!r}"]
    if "psnet" not in accepted:
        return []
    psnet = PSNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in (settings.get("psnet") or {}).items()})
    problems = []
    if psnet.in_channels != snippets:
        problems.append(f"{where}: PSNet reads {psnet.in_channels} snippets, extract_features.num_snippets = {snippets}")
    if psnet.num_slots != scale:
        problems.append(f"{where}: PSNet has {psnet.num_slots} frame slots, convert_annotations.num_frames = {scale}")
    return problems


def check_params(path: str | Path, stamp: str | Path | None = None, inputs: str | Path | None = None) -> None:
    """Validate the whole params file, its variants' model settings and the external inputs it
    names; write `stamp` if all passes, leave none behind if anything fails. `inputs`: then point
    the links under it at the real folders params name (aqa.data.real_inputs), before the stamp."""
    from aqa.data.real_inputs import link_real_inputs
    from aqa.io import write_text_atomic

    if stamp is not None:
        Path(stamp).unlink(missing_ok=True)
    params = load_params(path)
    problems = variant_errors(params) + missing_inputs(params)
    if problems:
        raise ParamsError(f"{path}: " + "; ".join(problems))
    if inputs is not None:
        link_real_inputs(params, inputs)
    if stamp is not None:
        write_text_atomic(stamp, CHECKED_STAMP)
