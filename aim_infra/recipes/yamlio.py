"""Read one YAML data file into a validated pydantic model, reporting any problem as one line naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import AimError, describe_validation_error

ModelT = TypeVar("ModelT", bound=BaseModel)
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> object:
    """Parse a YAML file; a missing file or a syntax error becomes one AimError line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AimError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise AimError(f"{path}: cannot read: {error}") from None
    try:
        # libyaml's C parser when PyYAML was built with it: the pure-Python one dominates catalogue load time.
        return yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise AimError(f"{path}:{where}: {problem}") from None


def load_model(path: Path, model: type[ModelT]) -> ModelT:
    """Parse and validate a whole YAML file as `model`; errors name the file and the field."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise AimError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise AimError(describe_validation_error(error, str(path))) from None
