"""Read one YAML data file into a validated pydantic model, reporting any problem as one line naming the file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from aim_infra.common.errors import AimError
from aim_infra.planning.errors import describe_validation_error

ModelT = TypeVar("ModelT", bound=BaseModel)
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> object:
    """Parse a YAML file; a missing file or a syntax error becomes one AimError line.

    Parsed data is cached as JSON under the user's cache folder, keyed by the file's content hash: PyYAML's
    constructor is most of the time `pulumi preview` spends loading the catalogues, and JSON reads ten times faster.
    The cache is best effort: unreadable or unwritable, it is simply not used."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AimError(f"{path}: file not found") from None
    except OSError as error:
        raise AimError(f"{path}: cannot read: {error}") from None
    cached = _cache_file(raw)
    if cached is not None:
        try:
            return json.loads(cached.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise AimError(f"{path}: cannot read: {error}") from None
    depth = _nesting(text)
    if depth > MAX_NESTING:
        raise AimError(f"{path}: nested {depth} levels deep; data files nest at most {MAX_NESTING} levels")
    try:
        # libyaml's C parser when PyYAML was built with it: the pure-Python one is several times slower.
        data = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise AimError(f"{path}:{where}: {problem}") from None
    except (ValueError, OverflowError, RecursionError) as error:  # e.g. an integer beyond int()'s digit limit
        raise AimError(f"{path}: cannot read a value: {' '.join(str(error).split())[:160]}") from None
    _store(raw, data)
    return data


#: Deeper nesting than any data file needs; far shallower than what overflows the YAML parser's stack.
MAX_NESTING = 64


def _nesting(text: str) -> int:
    """A cheap upper bound of how deeply `text` nests: open flow brackets, or block sequence markers on one line.
    Checked before parsing, since libyaml crashes the interpreter on documents nested tens of thousands deep."""
    deepest = depth = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(depth - 1, 0)
    for line in text.splitlines():
        stripped = line.lstrip(" -")
        deepest = max(deepest, (len(line) - len(stripped)) // 2)
    return deepest


def _cache_dir() -> Path:
    configured = os.environ.get("AIM_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aim" / "parsed-yaml"


def _cache_file(raw: bytes) -> Path | None:
    path = _cache_dir() / f"{hashlib.sha256(raw).hexdigest()}.json"
    return path if path.is_file() else None


def _store(raw: bytes, data: object) -> None:
    folder = _cache_dir()
    try:
        text = json.dumps(data)
        if json.loads(text) != data:
            return  # JSON would change the data (non-string keys): keep parsing this file every time
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{hashlib.sha256(raw).hexdigest()}.json"
        temporary = final.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(final)  # atomic: a concurrent reader sees the old state or the whole file
    except (OSError, TypeError, ValueError, RecursionError):
        return  # data JSON cannot hold (dates, ...) or a read-only home: parse every time instead


def load_model(path: Path, model: type[ModelT]) -> ModelT:
    """Parse and validate a whole YAML file as `model`; errors name the file and the field."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise AimError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise AimError(describe_validation_error(error, str(path))) from None
