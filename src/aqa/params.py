"""Load params.yaml and validate it against the project's JSON schema.

Every stage calls `load_params` first, so a wrong key or type fails early with its name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ParamsError(ValueError):
    """params.yaml is missing, unreadable or does not match the schema."""


def schema() -> dict[str, Any]:
    """The params schema shipped with the package (a copy of workflow/schemas/)."""
    text = resources.files("aqa").joinpath("params.schema.yaml").read_text()
    return yaml.safe_load(text)


def validate_params(params: dict[str, Any], source: str = "params") -> None:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            where = ".".join(str(p) for p in err.absolute_path) or "<top level>"
            lines.append(f"  {where}: {err.message}")
        raise ParamsError(f"{source} does not match the params schema:\n" + "\n".join(lines))


def load_params(path: str | Path, section: str | None = None) -> dict[str, Any]:
    """Read and validate a params file; return the whole dict or one stage's section."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of stage sections at the top level")
    validate_params(params, source=str(path))
    return params if section is None else params[section]
