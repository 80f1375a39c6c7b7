"""The layout's promise: strategies and the reduce are pure numpy (+ FAISS), knowing nothing of Ray, files or HTTP."""

from __future__ import annotations

import ast
import pathlib

import pytest

import alscale

PACKAGE = pathlib.Path(alscale.__file__).parent
PURE = sorted((PACKAGE / "strategies").glob("*.py")) + sorted((PACKAGE / "reduce").glob("*.py"))
#: Modules the pure cores must not import, directly or inside a function.
OUTSIDE = {"ray", "os", "pathlib", "shutil", "tempfile", "glob", "socket", "urllib", "http", "httpx", "requests", "pyarrow",
           "onnxruntime", "alscale._atomic", "alscale.arraycache", "alscale.engine", "alscale.pool", "alscale.queues",
           "alscale.loop", "alscale.manifest", "alscale.cli"}


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pure_cores_import_nothing_of_ray_files_or_http(path):
    found = {name for name in _imports(path) if any(name == bad or name.startswith(bad + ".") for bad in OUTSIDE)}
    assert not found, f"{path.relative_to(PACKAGE.parent)} imports {sorted(found)}"


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import os.path\n    from alscale._atomic import temp_beside\n")
    assert _imports(module) == {"os.path", "alscale._atomic"}
