"""The modules a Python file imports, read from its syntax tree (for the dependency tests)."""

import ast
import pathlib
from typing import Iterator


def imports(path: pathlib.Path, load_time_only: bool = False) -> Iterator[str]:
    """Every module name `path` imports, lazy imports inside functions included; with
    `load_time_only`, only those its loading runs (module and class bodies, not functions)."""
    def walk(nodes):
        for node in nodes:
            if load_time_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                yield node.module
                yield from (f"{node.module}.{alias.name}" for alias in node.names)
            yield from walk(ast.iter_child_nodes(node))

    yield from walk(ast.parse(path.read_text(), str(path)).body)
