"""Extract which model architectures one vLLM release serves with LoRA into recipes/vllm_lora.yaml (reads source only).

Usage: python scripts/extract_vllm_lora.py VLLM_SOURCE_DIR VERSION YYYY-MM-DD > recipes/vllm_lora.yaml
VLLM_SOURCE_DIR holds the `vllm` package of that release, e.g. `pip download vllm==VERSION --no-deps --only-binary
:all:` unzipped. An architecture is LoRA-capable when the class its registry entry names
(vllm/model_executor/models/registry.py: "Arch": ("module", "Class")) implements SupportsLoRA
(vllm/model_executor/models/interfaces.py) directly or through a base class, or sets `supports_lora = True`. Base
classes are followed within a module, through `from .x import Y` / `import a.b as c` imports across modules and
through the `as_*_model(Base)` adapters of models/adapters.py; a name bound in several branches (per-platform
classes) counts only when every branch supports LoRA. The allowed --max-lora-rank values are the `MaxLoRARanks`
Literal of vllm/config/lora.py.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY_FILE = "vllm/model_executor/models/registry.py"
INTERFACES_FILE = "vllm/model_executor/models/interfaces.py"
LORA_CONFIG_FILE = "vllm/config/lora.py"
MODELS_PACKAGE = "vllm.model_executor.models"
INTERFACES_MODULE = "vllm.model_executor.models.interfaces"
ADAPTERS_MODULE = "vllm.model_executor.models.adapters"
#: The dict in registry.py that merges every per-task registry dict: the one vLLM builds its ModelRegistry from.
REGISTRY_UNION = "_VLLM_MODELS"
LORA_PROTOCOL = "SupportsLoRA"
LORA_FLAG = "supports_lora"

#: Architecture → (module, class), as in registry.py's dicts.
Entries = dict[str, tuple[str, str]]


class ExtractionError(Exception):
    """The source has a shape this script does not understand: fail rather than silently miss architectures."""


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run at import time, including those under module-level `if` / `try` blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _module_level(block)


@dataclass(frozen=True)
class ImportedName:
    """`from module import name`, with `module` made absolute."""

    module: str
    name: str


#: What a module-level name is bound to: a class statement, an imported name, or `Name = <expression>`.
Binding = ast.ClassDef | ImportedName | ast.expr


@dataclass
class Module:
    """What one source module binds at module level, by name, and the modules it imports under a local name."""

    name: str
    is_package: bool
    #: Every binding of a name: several when branches of a module-level `if` (per-platform classes) or `try` bind it.
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    #: local name → absolute module, from `import a.b as local` (or `import a.b`, which binds `a`).
    module_aliases: dict[str, str] = field(default_factory=dict)

    def absolute(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self.name.split(".") if self.is_package else self.name.split(".")[:-1]
        anchor = package[: len(package) - node.level + 1]
        return ".".join([*anchor, *([node.module] if node.module else [])])

    def bind(self, name: str, binding: Binding) -> None:
        self.bindings.setdefault(name, []).append(binding)

    @classmethod
    def parse(cls, name: str, path: Path) -> Module:
        module = cls(name, path.name == "__init__.py")
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _module_level(tree.body):
            if isinstance(node, ast.ClassDef):
                module.bind(node.name, node)
            elif isinstance(node, ast.ImportFrom):
                source = module.absolute(node)
                for alias in node.names:
                    module.bind(alias.asname or alias.name, ImportedName(source, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    local = alias.asname or alias.name.split(".")[0]
                    module.module_aliases[local] = alias.name if alias.asname else local
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                module.bind(node.targets[0].id, node.value)
        return module

    def defines_class(self, name: str) -> bool:
        return any(isinstance(binding, ast.ClassDef) for binding in self.bindings.get(name, []))


class SourceTree:
    """The modules of one vLLM source tree, parsed on demand, and which of their classes support LoRA."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._modules: dict[str, Module | None] = {}
        self._lora: dict[tuple[str, str], bool] = {}
        self.unresolved: set[tuple[str, str]] = set()

    def module(self, name: str) -> Module | None:
        """The module `name` (a .py file or a package's __init__.py), or None outside the tree (torch, ...)."""
        if name not in self._modules:
            base = self.root.joinpath(*name.split("."))
            path = next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)
            self._modules[name] = Module.parse(name, path) if path else None
        return self._modules[name]

    def parsed(self) -> list[str]:
        """The modules read so far, by name."""
        return sorted(name for name, module in self._modules.items() if module is not None)

    def folder(self, name: str) -> str:
        """The folder holding module `name`'s file, relative to the tree."""
        module = self._modules.get(name)
        parts = name.split(".")
        return "/".join(parts if module is not None and module.is_package else parts[:-1])

    def supports_lora(self, module_name: str, class_name: str) -> bool:
        """Whether `class_name` as seen from `module_name` implements SupportsLoRA or sets supports_lora = True."""
        key = (module_name, class_name)
        if key not in self._lora:
            self._lora[key] = False  # guards against import cycles while this class is being resolved
            self._lora[key] = self._resolve(module_name, class_name)
        return self._lora[key]

    def _resolve(self, module_name: str, name: str) -> bool:
        module = self.module(module_name)
        if module is None:
            return False  # outside vLLM (torch.nn.Module, typing.Protocol, ...): cannot bring LoRA support
        bindings = module.bindings.get(name)
        if not bindings:
            self.unresolved.add((module_name, name))
            return False
        # A name bound per platform (DeepSeek-V4 picks nvidia/, amd/ or xpu/ at import time) counts only when every
        # branch supports LoRA: this file does not know which platform the image runs.
        return all(self._binding_supports_lora(module, binding) for binding in bindings)

    def _binding_supports_lora(self, module: Module, binding: Binding) -> bool:
        if isinstance(binding, ast.ClassDef):
            return self._class_supports_lora(module, binding)
        if isinstance(binding, ImportedName):
            if self.module(f"{binding.module}.{binding.name}") is not None:
                return False  # a submodule, not a class
            return self.supports_lora(binding.module, binding.name)
        return self._expression_supports_lora(module, binding)

    def _class_supports_lora(self, module: Module, node: ast.ClassDef) -> bool:
        if module.name == INTERFACES_MODULE and node.name == LORA_PROTOCOL:
            return True
        for statement in node.body:
            target = value = None
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target, value = statement.targets[0], statement.value
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                target, value = statement.target, statement.value
            if isinstance(target, ast.Name) and target.id == LORA_FLAG and isinstance(value, ast.Constant):
                return value.value is True  # an explicit flag decides, whatever the bases say
        return any(self._expression_supports_lora(module, base) for base in node.bases)

    def _expression_supports_lora(self, module: Module, expression: ast.expr) -> bool:
        """A base-class expression: `Name`, `alias.Name`, `package.module.Name`, or a subscript of one."""
        if isinstance(expression, ast.Subscript):
            return self._expression_supports_lora(module, expression.value)
        if isinstance(expression, ast.Name):
            return self.supports_lora(module.name, expression.id)
        if isinstance(expression, ast.Call) and expression.args and self._is_adapter(module, expression.func):
            return self._expression_supports_lora(module, expression.args[0])
        dotted = _names_dotted(expression)
        if dotted is None:
            return False  # a call (type(...), a class factory): nothing to follow
        head, *middle, name = dotted
        imported = [b for b in module.bindings.get(head, []) if isinstance(b, ImportedName)]
        if head in module.module_aliases:
            prefix = module.module_aliases[head]
        elif imported:  # `from vllm.model_executor.models import interfaces`, then `interfaces.SupportsLoRA`
            prefix = f"{imported[0].module}.{imported[0].name}"
        else:
            return False
        return self.supports_lora(".".join([prefix, *middle]), name)

    def _is_adapter(self, module: Module, function: ast.expr) -> bool:
        """`as_seq_cls_model` and its siblings in models/adapters.py return a subclass of the class they are given."""
        if not isinstance(function, ast.Name):
            return False
        bindings = module.bindings.get(function.id, [])
        return any(isinstance(b, ImportedName) and b.module == ADAPTERS_MODULE for b in bindings)


def _names_dotted(expression: ast.expr) -> list[str] | None:
    """`a.b.C` → ["a", "b", "C"]; None for anything but a chain of attribute look-ups on a name."""
    parts: list[str] = []
    while isinstance(expression, ast.Attribute):
        parts.insert(0, expression.attr)
        expression = expression.value
    return [expression.id, *parts] if isinstance(expression, ast.Name) and parts else None


def _literal_str(node: ast.expr, where: str) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    raise ExtractionError(f"{where}: expected a string literal, got {ast.unparse(node)}")


def _entry(value: ast.expr, where: str) -> tuple[str, str]:
    if isinstance(value, ast.Tuple) and len(value.elts) == 2:
        return _literal_str(value.elts[0], where), _literal_str(value.elts[1], where)
    raise ExtractionError(f"{where}: expected (module, class), got {ast.unparse(value)}")


def _names(node: ast.expr) -> list[str] | None:
    """`k` → ["k"]; `k, (mod, arch)` → ["k", "mod", "arch"]; anything else → None."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Tuple):
        parts = [_names(element) for element in node.elts]
        return None if any(p is None for p in parts) else [name for p in parts for name in p or []]
    return None


def _comprehension(node: ast.DictComp, lookup: Callable[[str], Entries]) -> Entries:
    """`{k: (mod, arch) for k, (mod, arch) in KNOWN.items() if arch == "X"}`: the entries of KNOWN it keeps."""
    shape = ast.unparse(node)
    loop = node.generators[0] if len(node.generators) == 1 else None
    call = loop.iter if loop else None
    target = _names(loop.target) if loop else None
    if not (
        loop
        and isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "items"
        and isinstance(call.func.value, ast.Name)
        and target is not None
        and len(target) == 3
        and _names(node.key) == target[:1]
        and _names(node.value) == target[1:]
    ):
        raise ExtractionError(f"registry comprehension not understood: {shape}")
    kept = {}
    for architecture, (module, class_name) in lookup(call.func.value.id).items():
        bound = dict(zip(target, (architecture, module, class_name), strict=True))
        if all(_condition(test, bound, shape) for test in loop.ifs):
            kept[architecture] = (module, class_name)
    return kept


def _condition(test: ast.expr, bound: dict[str, str], shape: str) -> bool:
    """`name == "literal"` or `name != "literal"` over the comprehension's loop variables."""
    if (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id in bound
        and len(test.ops) == 1
        and isinstance(test.comparators[0], ast.Constant)
    ):
        value, wanted = bound[test.left.id], test.comparators[0].value
        if isinstance(test.ops[0], ast.Eq):
            return value == wanted
        if isinstance(test.ops[0], ast.NotEq):
            return value != wanted
    raise ExtractionError(f"registry comprehension condition not understood: {shape}")


def registry(root: Path) -> Entries:
    """Architecture → (absolute module, class) as vLLM's ModelRegistry sees it: the union dict of every per-task
    registry dict it spreads (`**_TEXT_GENERATION_MODELS`, ...), a later entry winning as in a dict display."""
    tree = ast.parse((root / REGISTRY_FILE).read_text(encoding="utf-8"))
    displays = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Dict)
    }
    evaluated: dict[str, Entries] = {}

    def evaluate(name: str) -> Entries:
        if name not in evaluated:
            if name not in displays:
                raise ExtractionError(f"{REGISTRY_FILE}: no module-level dict {name}")
            merged: Entries = {}
            display = displays[name]
            for key, value in zip(display.keys, display.values, strict=True):
                where = f"{REGISTRY_FILE}:{value.lineno} {name}"
                if key is not None:
                    merged[_literal_str(key, where)] = _entry(value, where)
                elif isinstance(value, ast.Name):
                    merged.update(evaluate(value.id))
                elif isinstance(value, ast.DictComp):
                    merged.update(_comprehension(value, evaluate))
                else:
                    raise ExtractionError(f"{where}: cannot read **{ast.unparse(value)}")
            evaluated[name] = merged
        return evaluated[name]

    return {
        architecture: (module if module.startswith("vllm.") else f"{MODELS_PACKAGE}.{module}", class_name)
        for architecture, (module, class_name) in evaluate(REGISTRY_UNION).items()
    }


def max_lora_ranks(root: Path) -> list[int]:
    """The values of `MaxLoRARanks = Literal[...]` in vllm/config/lora.py."""
    tree = ast.parse((root / LORA_CONFIG_FILE).read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "MaxLoRARanks" for t in node.targets)
            and isinstance(node.value, ast.Subscript)
        ):
            items = node.value.slice.elts if isinstance(node.value.slice, ast.Tuple) else [node.value.slice]
            ranks = [item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, int)]
            if ranks and len(ranks) == len(items):
                return sorted(ranks)
    raise ExtractionError(f"{LORA_CONFIG_FILE}: no MaxLoRARanks = Literal[<ints>]")


@dataclass(frozen=True)
class Extraction:
    """What one vLLM source tree says about LoRA."""

    capable: dict[str, bool]  # registry architecture → LoRA-capable
    ranks: list[int]  # the values --max-lora-rank accepts
    folders: list[str]  # the source folders whose modules were read (relative to the tree)
    unresolved: set[tuple[str, str]]  # (module, name) the registry led to but no module binds


def extract(root: Path) -> Extraction:
    tree = SourceTree(root)
    interfaces = tree.module(INTERFACES_MODULE)
    if interfaces is None or not interfaces.defines_class(LORA_PROTOCOL):
        raise ExtractionError(f"{INTERFACES_FILE}: no class {LORA_PROTOCOL}")
    capable = {arch: tree.supports_lora(module, name) for arch, (module, name) in sorted(registry(root).items())}
    folders = {tree.folder(name) for name in tree.parsed()}
    # Only the outermost folders: models/transformers/ is part of models/.
    outermost = sorted(f for f in folders if not any(f.startswith(other + "/") for other in folders))
    return Extraction(capable, max_lora_ranks(root), outermost, tree.unresolved)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    source, version, read_on = Path(argv[1]), argv[2], argv[3]
    try:
        found = extract(source)
    except (ExtractionError, OSError, SyntaxError) as error:
        print(f"extract_vllm_lora: {error}", file=sys.stderr)
        return 1
    lora = [architecture for architecture, yes in found.capable.items() if yes]
    print(f"{len(found.capable)} architectures in the registry, {len(lora)} LoRA-capable", file=sys.stderr)
    for module, name in sorted(found.unresolved):
        print(f"warning: {module}.{name} not found in the source (counted as not LoRA-capable)", file=sys.stderr)
    sources = [f"blob/v{version}/{REGISTRY_FILE}", f"blob/v{version}/{INTERFACES_FILE}"]
    sources += [f"tree/v{version}/{folder}" for folder in found.folders]
    sources.append(f"blob/v{version}/{LORA_CONFIG_FILE}")
    print(f"""# Generated by scripts/extract_vllm_lora.py on {read_on} from the vLLM {version} wheel on PyPI
# (pypi.org/project/vllm/{version}): {REGISTRY_FILE}, the model modules it names
# and those of their base classes, {INTERFACES_FILE} and {LORA_CONFIG_FILE}.
# Re-run the script when aim:baseImage moves to another vLLM release (a test checks the versions agree), then
# re-check the hand-written recipes/vllm_lora_rules.yaml against that release's source.
vllm_version: "{version}"
read_on: "{read_on}"
sources:""")
    for source_url in sources:
        print(f"  - https://github.com/vllm-project/vllm/{source_url}")
    print(f"""# The values --max-lora-rank accepts (MaxLoRARanks).
max_lora_ranks: [{", ".join(str(rank) for rank in found.ranks)}]
# Registry architectures (config.json `architectures[0]`) whose model class supports LoRA,
# {len(lora)} of the {len(found.capable)} the registry lists.
architectures:""")
    for architecture in lora:
        print(f"  - {architecture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
