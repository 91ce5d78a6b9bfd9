"""Paper mode: params.yaml with a params overlay on top (params/paper.yaml), run by `dvc exp run`.

The overlay holds only the keys it changes (nested like params.yaml). `aqa paper` flattens it to
dotted keys, adds the `--set key=value` items given on the command line (these win), validates
the merged params as every stage would, and only then runs `dvc exp run --set-param key=value
...`: DVC writes the values into params.yaml, runs the pipeline and records the experiment with
its params and metrics (`dvc exp show`), so the ledger says which settings produced which
results, and nobody edits params.yaml by hand.

Values are handed to DVC in Hydra's override grammar (what `--set-param` parses), written here so
that DVC reads back exactly the value the overlay holds (a test applies them with DVC's own code).
"""

from __future__ import annotations

import copy
import logging
import math
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from aqa.errors import AqaError
from aqa.params import ParamsError, _yaml_problem, read_yaml, validate_params
from aqa.params_digest import has_key

log = logging.getLogger(__name__)

DEFAULT_OVERLAY = Path("params/paper.yaml")


class OverlayError(AqaError):
    """An overlay file or a --set item that cannot be applied to params.yaml."""


def read_overlay(path: str | Path) -> dict[str, Any]:
    """The overlay file as a nested mapping (YAML 1.2, as params.yaml is read)."""
    path = Path(path)
    try:
        data = read_yaml(path.read_text())
    except FileNotFoundError:
        raise OverlayError(f"{path}: overlay file not found") from None
    except yaml.YAMLError as exc:
        raise OverlayError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict) or not data:
        raise OverlayError(f"{path}: expected a mapping of params.yaml sections")
    return data


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted key: leaf value}; lists are leaves (a list in the overlay replaces the whole list)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def parse_set(item: str) -> tuple[str, Any]:
    """`key.path=value` -> (key, value); the value is read as YAML 1.2 (`1e-4`, `[0, 1]`, `null`)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise OverlayError(f"--set {item!r}: expected <dotted.key>=<value>, e.g. train.epochs=1")
    try:
        return key.strip(), read_yaml(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise OverlayError(f"--set {item!r}: value is not valid YAML: {_yaml_problem(exc)}") from None


def _assign(params: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _variant_of(dotted: str) -> str | None:
    parts = dotted.split(".")
    return parts[2] if len(parts) > 3 and parts[:2] == ["train", "variants"] else None


def resolve(params: dict[str, Any], overlay: dict[str, Any], sets: list[tuple[str, Any]],
            overlay_name: str = str(DEFAULT_OVERLAY)) -> tuple[dict[str, Any], dict[str, Any]]:
    """(overrides {dotted key: value}, merged params), the merged params validated.

    Overlay keys must exist in params.yaml (a typo would otherwise be added silently), except the
    settings of a variant params.yaml does not define, which are left out (logged): the overlay
    names every method's source settings, a params file may train fewer. A --set key must exist,
    or add a setting inside an existing variant (e.g. a variant's own `train.epochs`).
    """
    overrides: dict[str, Any] = {}
    for key, value in flatten(overlay).items():
        variant = _variant_of(key)
        if variant is not None and variant not in params["train"]["variants"]:
            log.info("%s: %s left out: params.yaml has no variant %r", overlay_name, key, variant)
            continue
        if not has_key(params, key) and variant is None:
            raise OverlayError(f"{overlay_name}: {key} is not a key of params.yaml")
        overrides[key] = value
    for key, value in sets:
        variant = _variant_of(key)
        if not has_key(params, key) and (variant is None or variant not in params["train"]["variants"]):
            raise OverlayError(f"--set {key}: not a key of params.yaml")
        overrides.pop(key, None)          # last given wins, and keeps its place at the end
        overrides[key] = value
    merged = copy.deepcopy(params)
    for key, value in overrides.items():
        _assign(merged, key, value)
    try:
        validate_params(merged, f"params.yaml + {overlay_name}")
    except ParamsError as exc:
        raise OverlayError(str(exc)) from None
    return overrides, merged


# --------------------------------------------------------------------------- DVC's --set-param


def hydra_value(value: Any, key: str = "") -> str:
    """`value` in Hydra's override grammar, read back by DVC as the same YAML value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise OverlayError(f"{key}: {value} cannot be a param")
        text = repr(value)
        if "e" in text:                  # Hydra's exponent is an integer without leading zeros
            mantissa, exponent = text.split("e")
            text = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{int(exponent)}"
        return text
    if isinstance(value, str):
        if "\\" in value or "${" in value or ("'" in value and '"' in value):
            raise OverlayError(f"{key}: {value!r}: backslashes, both kinds of quote and ${{...}} cannot be passed "
                               "to dvc exp run --set-param")
        return f'"{value}"' if "'" in value else f"'{value}'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v, key) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v, key)}" for k, v in value.items()) + "}"
    raise OverlayError(f"{key}: {value!r} is not a YAML value")


def set_param_args(overrides: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The `--set-param` arguments of `dvc exp run`: `+key=...` adds a key params.yaml lacks."""
    args = []
    for key, value in overrides.items():
        plus = "" if has_key(params, key) else "+"
        args += ["--set-param", f"{plus}{key}={hydra_value(value, key)}"]
    return args


def dvc_command(overrides: dict[str, Any], params: dict[str, Any], name: str | None = None) -> list[str]:
    dvc = Path(sys.executable).with_name("dvc")
    cmd = [str(dvc) if dvc.exists() else (shutil.which("dvc") or "dvc"), "exp", "run"]
    if name:
        cmd += ["--name", name]
    return cmd + set_param_args(overrides, params)


def run_paper(params_path: str | Path, overlay_path: str | Path, sets: list[str], *, name: str | None = None,
              dry_run: bool = False) -> int:
    """Validate params.yaml + overlay + sets, then run `dvc exp run` with them; its exit status."""
    from aqa.params import load_params

    if Path(params_path).resolve() != Path("params.yaml").resolve():
        raise OverlayError(f"--params {params_path}: dvc exp run sets the values in the DVC project's params.yaml "
                           "(run from the project's folder)")
    params = load_params(params_path)
    overlay = read_overlay(overlay_path)
    overrides, _ = resolve(params, overlay, [parse_set(s) for s in sets], str(overlay_path))
    cmd = dvc_command(overrides, params, name)
    log.info("params overlay run: %s", " ".join(cmd))
    if dry_run:
        print(shlex.join(cmd))
        return 0
    return subprocess.run(cmd).returncode
