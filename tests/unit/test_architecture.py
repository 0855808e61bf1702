"""The shape of the code base (issue 18), checked so that it stays the shape a newcomer reads.

- the domain (`mqless/domain/`) holds rules only: no AWS SDK, no wire format, no transport;
- the import graph of `mqless` has no cycles, counting imports made inside functions too;
- no module is over ~400 lines and no function over ~50 without a reason written at its top
  (a paragraph starting `Why it is long:` in its docstring);
- the layer holds no code that only the local runtime needs;
- every test reads Given/When/Then.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "layers" / "core"
SOURCE_ROOTS = [CORE / "mqless", ROOT / "cli" / "mqless_cli", ROOT / "functions"]
MODULE_LINES = 400
FUNCTION_LINES = 50
REASON = "Why it is long:"
AWS_SDK = ("boto3", "botocore", "mypy_boto3")


def _sources() -> Iterator[Path]:
    for root in SOURCE_ROOTS:
        yield from sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _core_modules() -> dict[str, Path]:
    return {
        _module_name(p): p for p in (CORE / "mqless").rglob("*.py") if "__pycache__" not in p.parts
    }


def _domain_imports() -> Iterator[tuple[str, str]]:
    for path in sorted((CORE / "mqless" / "domain").rglob("*.py")):
        for imported in _imported_modules(_tree(path)):
            yield _relative(path), imported


def test_the_domain_imports_no_aws_sdk() -> None:
    # Given the modules under mqless/domain/ (the broker's rules)
    # When their imports are read, TYPE_CHECKING blocks and imports in functions included
    found = sorted({(m, i) for m, i in _domain_imports() if i.split(".")[0] in AWS_SDK})
    # Then none is boto3, botocore or a boto3 type stub: storage adapters make AWS calls
    assert found == []


def test_the_domain_imports_no_transport_or_wiring() -> None:
    # Given the modules under mqless/domain/
    # When their imports are read
    found = sorted(
        {
            (m, i)
            for m, i in _domain_imports()
            if i.startswith(("mqless.transports", "mqless.wiring"))
        }
    )
    # Then none reaches a transport (HTTP models, JSON frames, STOMP) or the process wiring:
    # the domain returns values, transports render them, wiring builds the domain
    assert found == []


def test_the_import_graph_of_mqless_has_no_cycles() -> None:
    # Given every module of the mqless package and the mqless modules each imports
    modules = _core_modules()
    graph = {
        name: {i for i in _imported_modules(_tree(path)) if i in modules and i != name}
        for name, path in modules.items()
    }
    # When the graph is searched for a path that comes back to where it started
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    # Then there is none (imports inside functions count: a lazy import is still a cycle)
    assert cycles == []


def _reasoned(node: ast.AST) -> bool:
    doc = (
        ast.get_docstring(node)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef)
        else None
    )
    return bool(doc and REASON in doc)


def _oversized_modules() -> set[str]:
    return {
        _relative(path)
        for path in _sources()
        if len(path.read_text().splitlines()) > MODULE_LINES and not _reasoned(_tree(path))
    }


def _oversized_functions() -> set[str]:
    found = set()
    for path in _sources():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LINES and not _reasoned(node):
                    found.add(f"{_relative(path)}::{node.name}")
    return found


def test_no_module_is_over_400_lines_without_a_reason_at_its_top() -> None:
    # Given every module of the layer, the CLI and the functions
    # When each is measured in lines, docstring included
    oversized = _oversized_modules()
    # Then each over 400 says at its top why it is long
    assert oversized == set()


def test_no_function_is_over_50_lines_without_a_reason_at_its_top() -> None:
    # Given every function and method of the layer, the CLI and the functions
    # When each is measured from its def to its last line
    oversized = _oversized_functions()
    # Then each over 50 says in its docstring why it is long
    assert oversized == set()


def test_the_layer_holds_no_code_only_the_local_runtime_needs() -> None:
    # Given the modules of the layer (what Lambda loads)
    # When their imports are read
    found = sorted(
        (_relative(path), i)
        for path in (CORE / "mqless").rglob("*.py")
        for i in _imported_modules(_tree(path))
        if i.split(".")[0] in ("mqless_cli", "moto")
    )
    # Then none is the CLI, moto, or threads (Lambda runs one event per process at a time;
    # what `mqless dev` needs to run handlers on threads lives in cli/mqless_cli/local/)
    assert found == []


def _tests_without_given_when_then() -> set[str]:
    found = set()
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if "node_modules" in path.parts:
            continue
        lines = path.read_text().splitlines()
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
                "test"
            ):
                text = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                if not all(re.search(rf"\b{word}\b", text) for word in ("Given", "When", "Then")):
                    found.add(f"{_relative(path)}::{node.name}")
    return found


def test_every_test_reads_given_when_then() -> None:
    # Given every test function of the suite
    # When its source (docstring, comments, body) is read
    missing = _tests_without_given_when_then()
    # Then it says what is given, what is done and what is seen
    assert missing == set()
