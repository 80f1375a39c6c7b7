"""The layout's promises, checked on the source.

* strategies and the reduce are pure numpy (+ FAISS), knowing nothing of Ray, files, HTTP or
  the settings module;
* the dependency between them runs one way: the registry, ``alscale/strategies/__init__.py``,
  composes scorers (``alscale.strategies``) and reducers (``alscale.reduce``) into registered
  strategies; no other module of ``strategies/`` imports ``alscale.reduce``, and nothing in
  ``reduce/`` imports ``alscale.strategies``.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import alscale

PACKAGE = pathlib.Path(alscale.__file__).parent
STRATEGIES = sorted((PACKAGE / "strategies").glob("*.py"))
REDUCE = sorted((PACKAGE / "reduce").glob("*.py"))
PURE = STRATEGIES + REDUCE
#: Modules the pure cores must not import, directly or inside a function.
OUTSIDE = {"ray", "os", "pathlib", "shutil", "tempfile", "glob", "socket", "urllib", "http", "httpx", "requests", "pyarrow",
           "onnxruntime", "alscale._atomic", "alscale.arraycache", "alscale.config", "alscale.engine", "alscale.pool",
           "alscale.queues", "alscale.loop", "alscale.manifest", "alscale.cli"}


def _imports(path: pathlib.Path) -> set[str]:
    """Every module the file at ``path`` (inside the package) imports, anywhere in it."""
    package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
    return _imported_names(path.read_text(), package)


def _imported_names(source: str, package: str) -> set[str]:
    """Every module ``source`` imports, as absolute dotted names.

    ``from a.b import c`` gives both ``a.b`` and ``a.b.c`` (``c`` may be a module); a relative
    import is resolved against ``package``, the dotted package the source belongs to.
    """
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _found(path: pathlib.Path, forbidden: set[str]) -> list[str]:
    return sorted(name for name in _imports(path) if any(name == bad or name.startswith(bad + ".") for bad in forbidden))


def _ids(path: pathlib.Path) -> str:
    return f"{path.parent.name}/{path.name}"


@pytest.mark.parametrize("path", PURE, ids=_ids)
def test_pure_cores_import_nothing_of_ray_files_http_or_settings(path):
    found = _found(path, OUTSIDE)
    assert not found, f"{path.relative_to(PACKAGE.parent)} imports {found}"


@pytest.mark.parametrize("path", REDUCE, ids=_ids)
def test_the_reduce_does_not_import_the_strategies(path):
    found = _found(path, {"alscale.strategies"})
    assert not found, (f"{path.relative_to(PACKAGE.parent)} imports {found}: the reduce takes what it needs as "
                       "arguments (the registry in alscale/strategies/__init__.py passes scorers in)")


@pytest.mark.parametrize("path", [p for p in STRATEGIES if p.name != "__init__.py"], ids=_ids)
def test_only_the_registry_of_strategies_imports_the_reduce(path):
    found = _found(path, {"alscale.reduce"})
    assert not found, f"{path.relative_to(PACKAGE.parent)} imports {found}: only alscale/strategies/__init__.py may"


def test_the_checks_see_every_form_of_import():
    source = ("def f():\n    import os.path\n    from alscale._atomic import temp_beside\n"
              "from alscale import strategies\nfrom ..strategies.uncertainty import margin\nfrom . import topk\n")
    assert _imported_names(source, "alscale.reduce") == {
        "os.path", "alscale._atomic", "alscale._atomic.temp_beside", "alscale", "alscale.strategies",
        "alscale.strategies.uncertainty", "alscale.strategies.uncertainty.margin", "alscale.reduce", "alscale.reduce.topk",
    }
    assert _found(PACKAGE / "reduce" / "topk.py", {"alscale.checks"}) == ["alscale.checks", "alscale.checks.check_int"]
