"""What code a MONAI bundle config would run, and whether it stays inside an allow-list (pure; no torch, no MONAI).

A bundle's ``inference.json`` is code: ``$`` strings are Python expressions (or
``import`` statements) that MONAI evaluates with ``eval``, ``_target_`` names
are imported and called, ``%`` macros pull in other files. ``audit_config``
lists every such item and checks it against an allow-list:

- imports and dotted ``_target_`` names must lie in ``monai``, ``torch``,
  ``numpy`` or ``scipy.ndimage``; a bare ``_target_`` is a MONAI component name
  (not a Python builtin or an importable module, which MONAI would also accept);
- an expression may use those modules (``monai``, ``torch``, ``np``, ``numpy``
  and names bound by allowed imports), ``@`` references, a few harmless
  builtins (``len``, ``int``, ``list``...), lambdas and comprehensions, and
  nothing else: no ``os``, ``subprocess``, ``eval``, ``exec``, ``open``,
  ``__import__``, ``getattr``, no attribute starting with ``_`` (dunders), and
  none of the names inside the allowed modules that load pickles, run commands,
  download, write files or evaluate further configs (``torch.load``,
  ``np.load``, ``torch.hub``, ``monai.utils.optional_import``,
  ``ConfigParser``...: ``DENIED_NAMES``);
- ``%`` macros naming another file and ``_mode_: debug`` are refused.

Only part of a config runs in the workstation: ``evaluated_config`` keeps the
keys it evaluates (``imports``, ``preprocessing`` without its loader transforms,
``inferer``, ``network_def``) and every top-level key they reference,
transitively; the loader gives exactly that to MONAI, so nothing the audit did
not see can run. Items elsewhere (``datalist``, ``evaluator``, ``training``...)
are listed as not evaluated and do not count. Entries of ``imports`` outside the
allow-list are skipped (not imported) unless the user trusts the bundle; an
expression that needs them is refused anyway.

This is a guard that makes code visible and refuses the obvious, not a sandbox:
a bundle that passes can still do anything its allowed MONAI/torch calls do
(write files with a SaveImage transform, for example). A user who trusts the
publisher can accept a refused config (``--trust-code``); that choice is recorded.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from inference.errors import ModelError

logger = logging.getLogger(__name__)

ALLOWED_MODULES = ("monai", "torch", "numpy", "scipy.ndimage")
DEFAULT_GLOBALS = {"monai": "monai", "torch": "torch", "np": "numpy", "numpy": "numpy"}  # MONAI's own
EVALUATED_KEYS = ("imports", "device", "bundle_root", "preprocessing", "inferer", "network_def")
REPLACED_KEYS = ("device", "bundle_root")  # the workstation sets these itself
LOADER_TRANSFORMS = ("LoadImaged", "LoadImage", "EnsureChannelFirstd", "EnsureChannelFirst",
                     "AddChanneld", "AddChannel", "AsChannelFirstd", "AsChannelFirst")
SAFE_BUILTINS = frozenset({
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "frozenset", "int",
    "isinstance", "len", "list", "map", "max", "min", "pow", "range", "reversed", "round", "set", "slice",
    "sorted", "str", "sum", "tuple", "zip", "True", "False", "None",
})
DENIED_NAMES = frozenset({
    # load pickles or code, import by name, evaluate configs
    "load", "loads", "load_library", "load_inline", "read_array", "fromfile", "loadtxt", "genfromtxt", "memmap",
    "hub", "package", "cpp_extension", "ctypeslib", "f2py", "distutils", "testing", "optional_import", "locate",
    "instantiate", "import_module", "ConfigParser", "ConfigItem", "ConfigExpression", "ConfigComponent",
    "ConfigWorkflow", "BundleWorkflow", "PythonicWorkflow", "ReferenceResolver", "ComponentLocator", "scripts",
    # run commands, download, write files, reach the interpreter
    "run", "run_cmd", "run_debug", "run_eval", "download", "download_url", "download_and_extract", "extractall",
    "save", "savez", "savez_compressed", "savetxt", "tofile", "system", "popen", "subprocess", "os", "sys",
    "builtins", "importlib", "pickle", "shutil", "socket", "ctypes", "multiprocessing", "distributed",
    "auto3dseg", "nnunet", "exec", "eval", "open", "globals", "getattr", "setattr", "delattr", "vars",
})
DENIED_KEYWORDS = frozenset({"allow_pickle", "pickle_module", "trust_remote_code"})
_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Lambda, ast.IfExp, ast.Dict, ast.Set, ast.ListComp,
    ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Compare, ast.Call, ast.Constant, ast.Attribute, ast.Subscript,
    ast.Starred, ast.Name, ast.List, ast.Tuple, ast.Slice, ast.keyword, ast.arguments, ast.arg, ast.comprehension,
    ast.JoinedStr, ast.FormattedValue, ast.operator, ast.boolop, ast.cmpop, ast.unaryop, ast.expr_context,
)
_SEP = "::"
_REF = re.compile(r"@(?:\w*)(?:::\w*)*")
_RELATIVE = re.compile(r"(?:@|%)(?:::)+")
_FILE_MACRO = re.compile(r".*\.(json|yaml|yml)(?=(?:::.*)|$)", re.IGNORECASE)

Kind = Literal["expression", "import", "target", "macro", "mode"]


@dataclass(frozen=True)
class CodeItem:
    """One piece of code in a config: where it is, what it says, and the verdict."""

    where: str
    kind: Kind
    text: str
    allowed: bool
    reason: str = ""
    evaluated: bool = True
    note: str = ""

    def line(self) -> str:
        """One line for the user: verdict, place, the code (shortened), and why."""
        verdict = ("refused" if not self.allowed else "allowed") if self.evaluated else "not run"
        text = self.text if len(self.text) <= 160 else self.text[:157] + "..."
        why = ("" if self.allowed else self.reason if self.evaluated else f"outside the allow-list: {self.reason}")
        extra = "; ".join(x for x in (self.note, why) if x)
        return f"{verdict:<8} {self.kind:<10} {self.where}: {text}" + (f"  ({extra})" if extra else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"where": self.where, "kind": self.kind, "text": self.text, "allowed": self.allowed,
                "reason": self.reason, "evaluated": self.evaluated, "note": self.note}


@dataclass(frozen=True)
class ConfigAudit:
    """Every code item of a config, with the verdict; ``passed`` when nothing the workstation runs is refused."""

    items: tuple[CodeItem, ...]

    @property
    def refused(self) -> tuple[CodeItem, ...]:
        """Items the workstation would run that lie outside the allow-list."""
        return tuple(i for i in self.items if i.evaluated and not i.allowed)

    @property
    def passed(self) -> bool:
        """True if the config can run without the user trusting its code."""
        return not self.refused

    def lines(self) -> list[str]:
        """The listing shown at install time and before a first run."""
        return [i.line() for i in self.items]

    def summary(self) -> str:
        """One sentence: how many items, how many the workstation runs, how many refused."""
        run = sum(1 for i in self.items if i.evaluated)
        return (f"{len(self.items)} code item(s) in the config, {run} run by the workstation, "
                f"{len(self.refused)} outside the allow-list (monai, torch, numpy, scipy.ndimage)")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"passed": self.passed, "summary": self.summary(), "items": [i.to_dict() for i in self.items]}


class UntrustedCodeError(ModelError):
    """A bundle's config would run code outside the allow-list and the user has not trusted it."""

    def __init__(self, message: str, audit: ConfigAudit) -> None:
        super().__init__(message)
        self.audit = audit


def refusal_message(name: str, audit: ConfigAudit, hint: str) -> str:
    """The error text: which bundle, what code, and how to accept it knowingly."""
    shown = [f"  {i.line()}" for i in audit.refused]
    return (f"bundle '{name}': its config runs code outside the allow-list (monai, torch, numpy, "
            f"scipy.ndimage):\n" + "\n".join(shown) + f"\n{hint}")


# --- walking the config ---------------------------------------------------------------------------
def _walk(value: Any, where: str) -> Iterator[tuple[str, Any, Any]]:
    """(id, key within its parent, value) for every node under ``value``, MONAI's ``::`` ids."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{where}{_SEP}{k}" if where else str(k)
            yield sub, k, v
            yield from _walk(v, sub)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            sub = f"{where}{_SEP}{i}" if where else str(i)
            yield sub, i, v
            yield from _walk(v, sub)


def _absolute(where: str, text: str) -> str:
    """``#`` -> ``::``, and relative ids (``@::x``, ``%::::x``) made absolute, as MONAI does."""
    text = text.replace("#", _SEP)
    current = where.split(_SEP)
    for prefix in sorted(set(_RELATIVE.findall(text)), reverse=True):
        sym = prefix[0]
        up = prefix[1:].count(_SEP)
        base = "" if up >= len(current) else _SEP.join(current[:-up]) + _SEP
        text = text.replace(prefix, sym + base)
    return text


def _refs(where: str, text: str) -> list[str]:
    """The ids a string refers to (``@`` in an expression, a whole-string ``@id``, a ``%id`` macro)."""
    text = _absolute(where, text)
    if text.startswith("%"):
        return [] if _FILE_MACRO.match(text[1:]) else [text[1:]]
    found = _REF.findall(text)
    if text.startswith("$"):
        return [f[1:] for f in found]
    return [text[1:]] if found and found[0] == text else []


def _is_loader(item: Any) -> bool:
    target = item.get("_target_", "") if isinstance(item, dict) else ""
    return isinstance(target, str) and target.rsplit(".", 1)[-1] in LOADER_TRANSFORMS


def _reachable(config: Mapping[str, Any]) -> set[str]:
    """Top-level keys the workstation evaluates: the roots and what they reference, transitively."""
    todo = [k for k in EVALUATED_KEYS if k in config and k not in REPLACED_KEYS]
    seen: set[str] = set()
    while todo:
        key = todo.pop()
        if key in seen or key not in config:
            continue
        seen.add(key)
        value = _without_loaders(key, config[key])
        nodes = [(key, value), *((w, v) for w, _k, v in _walk(value, key))]
        for where, v in nodes:
            if isinstance(v, str):
                for ref in _refs(where, v):
                    top = ref.split(_SEP, 1)[0]
                    todo.extend(config if top == "" else [top])  # "@" alone means the whole config
    return seen


def _without_loaders(key: str, value: Any) -> Any:
    if key == "preprocessing" and isinstance(value, dict) and isinstance(value.get("transforms"), list):
        return {**value, "transforms": [t for t in value["transforms"] if not _is_loader(t)]}
    return value


def evaluated_config(config: Mapping[str, Any], *, bundle_root: str, device: str | None,
                     trusted: bool = False) -> dict[str, Any]:
    """Exactly what the loader gives MONAI: the evaluated keys, loaders removed, our root and device.

    Unless ``trusted``, ``imports`` keeps only the allowed ones.
    """
    keep = _reachable(config)
    out: dict[str, Any] = {k: _without_loaders(k, config[k]) for k in config if k in keep}
    out["bundle_root"] = bundle_root
    if "device" in config and device is not None:
        out["device"] = f"$torch.device('{device}')"
    if not trusted and isinstance(out.get("imports"), list):
        out["imports"] = [i for i in out["imports"] if _import_verdict(i)[0] is None]
    return out


# --- verdicts ---------------------------------------------------------------------------------------
def _module_reason(dotted: str) -> str | None:
    """Why a dotted module/object name is refused, or None if it lies in an allowed module."""
    parts = dotted.split(".")
    if not any(dotted == m or dotted.startswith(m + ".") for m in ALLOWED_MODULES):
        return f"'{parts[0]}' is not an allowed module"
    bad = next((p for p in parts if p.startswith("_") or p in DENIED_NAMES), None)
    return f"'{bad}' is refused (it can load, run or write code)" if bad else None


def _import_verdict(text: str) -> tuple[str | None, list[tuple[str, str]]]:
    """(reason refused or None, [(bound name, dotted module/object)]) for a ``$import``/``$from`` string."""
    body = text[1:] if text.startswith("$") else text
    try:
        node = next(iter(ast.parse(body).body), None)
    except SyntaxError:
        return "not valid Python", []
    if isinstance(node, ast.Import):
        pairs = [(a.asname or a.name, a.name) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level or not node.module:
            return "relative imports are refused", []
        pairs = [(a.asname or a.name, f"{node.module}.{a.name}") for a in node.names]
    else:
        return "not an import", []
    reason = next((r for _n, d in pairs if (r := _module_reason(d))), None)
    return reason, pairs


def _is_import(text: str) -> bool:
    try:
        node = next(iter(ast.parse(text[1:]).body), None)
    except SyntaxError:
        return False
    return isinstance(node, ast.Import | ast.ImportFrom)


def _target_reason(target: str) -> str | None:
    if "." in target:
        return _module_reason(target)
    if target.startswith("_") or target in DENIED_NAMES:
        return f"'{target}' is refused (it can load, run or write code)"
    if hasattr(builtins, target):
        return f"'{target}' is a Python builtin, not a MONAI component"
    try:
        if importlib.util.find_spec(target) is not None:
            return f"'{target}' is a Python module, not a MONAI component"
    except (ImportError, ValueError):
        pass
    return None


class _ExpressionCheck:
    """Walks a parsed expression with its scopes; ``reason`` is the first thing refused."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.reason: str | None = None

    def refuse(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason

    def visit(self, node: ast.AST, scope: frozenset[str]) -> None:
        if self.reason is not None:
            return
        if not isinstance(node, _ALLOWED_NODES):
            self.refuse(f"Python syntax '{type(node).__name__}' is not allowed")
        elif isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load) and node.id not in scope and node.id not in self.names:
                self.refuse(f"uses '{node.id}', which is not allowed")
        elif isinstance(node, ast.Attribute):
            self.visit(node.value, scope)
            if node.attr.startswith("_") or node.attr in DENIED_NAMES:
                self.refuse(f"uses '.{node.attr}', which is refused (it can load, run or write code)")
        elif isinstance(node, ast.Lambda):
            a = node.args
            for default in [*a.defaults, *(d for d in a.kw_defaults if d is not None)]:
                self.visit(default, scope)
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x is not None)]
            self.visit(node.body, scope | {p.arg for p in params})
        elif isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            inner = scope
            for i, gen in enumerate(node.generators):
                self.visit(gen.iter, scope if i == 0 else inner)
                inner = inner | {n.id for n in ast.walk(gen.target) if isinstance(n, ast.Name)}
                for cond in gen.ifs:
                    self.visit(cond, inner)
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for part in parts:
                self.visit(part, inner)
        else:
            if isinstance(node, ast.keyword) and node.arg in DENIED_KEYWORDS:
                self.refuse(f"passes '{node.arg}', which is refused (it can load code)")
            for child in ast.iter_child_nodes(node):
                self.visit(child, scope)


def _expression_reason(where: str, text: str, names: frozenset[str]) -> str | None:
    body = _REF.sub(lambda m: "__ref__", _absolute(where, text)[1:])
    try:
        tree = ast.parse(body.strip(), mode="eval")
    except SyntaxError:
        return "not a valid Python expression"
    check = _ExpressionCheck(names | {"__ref__"})
    check.visit(tree, frozenset())
    return check.reason


def audit_config(config: Mapping[str, Any]) -> ConfigAudit:
    """Every expression, import, ``_target_``, file macro and debug mode in ``config``, with verdicts."""
    keep = _reachable(config)
    names = set(SAFE_BUILTINS) | set(DEFAULT_GLOBALS)
    raw: list[tuple[str, Any, Any, bool]] = []
    for where, key, value in _walk(dict(config), ""):
        top = where.split(_SEP, 1)[0]
        raw.append((where, key, value, top in keep and top not in REPLACED_KEYS))
    for _where, _key, value, evaluated in raw:  # names bound by allowed, evaluated imports
        if evaluated and isinstance(value, str) and value.startswith("$") and _is_import(value):
            reason, pairs = _import_verdict(value)
            if reason is None:
                names.update(n for n, _d in pairs)
    frozen = frozenset(names)
    items: list[CodeItem] = []
    for where, key, value, evaluated in raw:
        top = where.split(_SEP, 1)[0]
        note = "" if evaluated else ("replaced by the workstation" if top in REPLACED_KEYS
                                     else "the workstation never evaluates this key")
        if top == "preprocessing" and _inside_loader(config, where):
            evaluated, note = False, "loader transform: the workstation supplies the image itself"
        if isinstance(value, str) and value.startswith("$"):
            if _is_import(value):
                reason, _pairs = _import_verdict(value)
                if reason is not None and evaluated and top == "imports" and isinstance(config["imports"], list):
                    evaluated, note = False, "skipped: not imported unless the bundle is trusted"
                items.append(CodeItem(where, "import", value, reason is None, reason or "", evaluated, note))
            else:
                reason = _expression_reason(where, value, frozen)
                items.append(CodeItem(where, "expression", value, reason is None, reason or "", evaluated, note))
        elif key == "_target_" and isinstance(value, str) and not value.startswith(("@", "%")):
            reason = _target_reason(value)
            items.append(CodeItem(where, "target", value, reason is None, reason or "", evaluated, note))
        elif isinstance(value, str) and value.startswith("%") and _FILE_MACRO.match(_absolute(where, value)[1:]):
            items.append(CodeItem(where, "macro", value, False, "macros from other files are refused",
                                  evaluated, note))
        elif key == "_mode_" and value == "debug":
            items.append(CodeItem(where, "mode", value, False, "debug mode starts a debugger", evaluated, note))
    return ConfigAudit(tuple(items))


def _inside_loader(config: Mapping[str, Any], where: str) -> bool:
    """True if ``where`` lies inside a loader transform of ``preprocessing::transforms``."""
    parts = where.split(_SEP)
    if len(parts) < 3 or parts[1] != "transforms" or not parts[2].isdigit():
        return False
    pre = config.get("preprocessing")
    transforms = pre.get("transforms") if isinstance(pre, dict) else None
    index = int(parts[2])
    return isinstance(transforms, list) and index < len(transforms) and _is_loader(transforms[index])
