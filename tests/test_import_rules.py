"""The layering of the library, checked on the source of every module (``ast``, no import).

* **core** (the top-level modules: ``events``, ``eventlog``, ``catalogue``,
  ``profile``, ``errors``, ``config``, ...) defines the shared contracts and
  imports no stage and not the CLI;
* **stages** (``serving``, ``stream``, ``datastore``, ``training``,
  ``modelstore``) and the **lab** (``sim``, ``demo``, ``replay``) never import
  the CLI; a stage imports another stage only along an edge of
  :data:`MAY_USE`, and only through that stage's public API: the ``__all__``
  of one of its packages (``from clickrouter.modelstore import ModelStore``),
  never a module inside it; the lab uses the stages the same way, and its
  three packages, one test bench, use each other freely;
* inside ``serving`` the decision engine knows nothing of HTTP;
* **cli/** is the composition root and the package's ``__init__`` its facade
  (``clickrouter.ModelBank``): they may import anything.

Imports inside functions and under ``TYPE_CHECKING`` count too: they are
dependencies all the same.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "clickrouter"
STAGES = frozenset({"serving", "stream", "datastore", "training", "modelstore"})
LAB = frozenset({"sim", "demo", "replay"})

# the other stages whose public API each stage may use
MAY_USE: dict[str, frozenset[str]] = {
    "serving": frozenset({"modelstore"}),  # loads model versions
    "stream": frozenset({"datastore"}),  # writes labelled records
    "datastore": frozenset(),
    "training": frozenset({"datastore", "modelstore"}),  # reads records, publishes versions
    "modelstore": frozenset(),
    # the lab runs the whole loop: any stage, and each other
    **{name: STAGES | LAB for name in LAB},
}


@dataclass(frozen=True)
class Import:
    file: str  # relative to src/clickrouter
    line: int
    module: str  # absolute dotted name
    names: tuple[str, ...]  # ``from module import names``; empty for ``import module``


def layer(module: str) -> str:
    """``core``, ``cli``, ``facade`` or the stage/lab package of a dotted module name."""
    parts = module.split(".")
    if parts == ["clickrouter"]:
        return "facade"
    top = parts[1]
    if top == "cli" or top in STAGES | LAB:
        return top
    return "core"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[Import]:
    """Every ``clickrouter`` import in ``path``, at any depth, relative ones resolved."""
    rel = path.relative_to(PACKAGE).as_posix()
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(rel, node.lineno, a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append(Import(rel, node.lineno, base, tuple(a.name for a in node.names)))
    return [i for i in found if i.module == "clickrouter" or i.module.startswith("clickrouter.")]


def public_api() -> dict[str, frozenset[str]]:
    """``__all__`` of every package under clickrouter (a package without one exports nothing)."""
    api = {}
    for init in PACKAGE.rglob("__init__.py"):
        names: frozenset[str] = frozenset()
        for node in ast.parse(init.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                names = frozenset(ast.literal_eval(node.value))
        api[module_name(init)] = names
    return api


def violation(imp: Import, api: dict[str, frozenset[str]]) -> str | None:
    """Why ``imp`` breaks a rule, or None."""
    here = layer(module_name(PACKAGE / imp.file))
    there = layer(imp.module)
    if here in ("cli", "facade"):
        return None
    if there == "cli":
        return f"{here} imports the CLI"
    if there == "facade":
        extra = set(imp.names) - {"__version__"}
        return f"{here} imports {sorted(extra)} from the facade" if extra else None
    if here == "core":
        return None if there == "core" else f"the core imports the {there} stage"
    if there == "core" or there == here or (here in LAB and there in LAB):
        if imp.file.startswith("serving/engine/") and imp.module.startswith(
            "clickrouter.serving.http"
        ):
            return "the decision engine imports the HTTP layer"
        return None
    if there not in MAY_USE[here]:
        return f"{here} may not use {there}"
    if imp.module not in api:
        return f"{here} imports a module inside {there}, not its public API"
    hidden = set(imp.names) - api[imp.module]
    if not imp.names or hidden:
        return f"{here} imports {sorted(hidden) or imp.module} outside {imp.module}.__all__"
    return None


def test_layers_are_respected() -> None:
    api = public_api()
    broken: list[tuple[Import, str]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for imp in imports_of(path):
            why = violation(imp, api)
            if why is not None:
                broken.append((imp, why))
    lines = [f"src/clickrouter/{imp.file}:{imp.line}: {imp.module}: {why}" for imp, why in broken]
    assert not lines, "imports that break the layering:\n" + "\n".join(lines)


def test_the_rules_catch_what_they_forbid() -> None:
    """The classifier itself, on imports the package does not contain."""
    api = public_api()

    def why(file: str, module: str, *names: str) -> str | None:
        return violation(Import(file, 1, module, names), api)

    assert why("events.py", "clickrouter.serving.bank", "ModelBank") is not None
    assert why("events.py", "clickrouter.cli", "main") is not None
    assert why("training/manager.py", "clickrouter.cli.train", "run_train") is not None
    assert why("serving/bank.py", "clickrouter.training", "TrainingManager") is not None
    assert why("training/manager.py", "clickrouter.modelstore.store", "ModelStore") is not None
    assert why("training/manager.py", "clickrouter.modelstore", "ModelStore") is None
    assert why("training/manager.py", "clickrouter.modelstore", "not_exported") is not None
    assert why("serving/engine/policy.py", "clickrouter.serving.http.app", "x") is not None
    assert why("serving/http/app.py", "clickrouter.serving.engine.policy", "x") is None
    assert why("demo/run.py", "clickrouter.training", "TrainingManager") is None
    assert why("replay/loop.py", "clickrouter.serving.engine.fused", "decider_for") is not None
    assert why("replay/loop.py", "clickrouter.serving.engine", "decider_for") is None
    assert why("replay/loop.py", "clickrouter.demo.oracle", "OracleScorer") is None
    assert why("cli/serve.py", "clickrouter.serving.http.server", "run_server") is None
    assert why("stream/consumer.py", "clickrouter", "ModelBank") is not None
    assert why("logs.py", "clickrouter", "__version__") is None
