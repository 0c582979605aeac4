"""One-way layers, enforced: every import under src/autoload (module level, inside functions, relative ones
resolved, and importlib.import_module("autoload...") with a literal name) is read with `ast`, each module is mapped
to its layer, and the imports must follow ALLOWED: no import against the table, no family file importing another,
no cycle between layers, no cycle between modules (a cycle closed by an import inside a function counts too).
docs/architecture.md draws the same table."""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src"

# layer -> the other layers it may import. A layer is a top-level module or package of autoload (see LAYER_OF).
# Lower layers first; the table itself must stay acyclic (test_the_table_is_acyclic).
ALLOWED: dict[str, set[str]] = {
    "hub": set(),  # the client: HTTP, cache, downloads, FileSource
    "server": set(),  # the local hub server: reuses nothing of the client
    "nn": set(),  # torch-only building blocks: norms, rope, attention, masks, caches, losses, outputs, heads
    "errors": {"hub"},
    "jsonfiles": {"hub", "errors"},
    "configuration": {"hub", "errors", "jsonfiles"},
    "placement": {"errors"},
    "quant": {"hub", "errors", "jsonfiles", "configuration"},  # quantized Linear kernels, GPTQ/AWQ, GGUF files
    "tokenization": {"hub", "configuration", "errors", "jsonfiles", "quant"},  # quant: a GGUF file's vocabulary
    "generation": {"nn", "configuration", "errors", "jsonfiles"},  # the mixin; tokenizers are duck-typed
    "modeling": {"hub", "nn", "configuration", "errors", "jsonfiles", "placement", "quant"},  # base + loading
    "models": {"nn", "configuration", "modeling", "generation", "errors", "jsonfiles"},  # one file per family
    "registry": {"hub", "nn", "configuration", "errors", "jsonfiles", "placement", "tokenization", "generation",
                 "modeling", "models", "quant"},  # Auto classes; models resolved from "module:Class" strings
    "sentence": {"hub", "nn", "configuration", "errors", "jsonfiles", "placement", "tokenization", "modeling",
                 "models", "registry"},  # SentenceTransformer / CrossEncoder on the Auto classes
    "pipelines": {"hub", "nn", "configuration", "errors", "jsonfiles", "placement", "tokenization", "generation",
                  "modeling", "models", "registry", "sentence"},
    "cli": {"hub", "server", "nn", "configuration", "errors", "jsonfiles", "placement", "tokenization",
            "generation", "modeling", "models", "registry", "sentence", "pipelines"},
    "root": set(),  # autoload/__init__.py: a lazy table of names, resolved by __getattr__
}
# autoload.<name> -> layer, where the name is not the layer's own.
LAYER_OF = {"loading": "modeling", "distributed": "modeling"}  # distributed/: loading under tensor parallel, FSDP2
# Inside models/: a family file imports no other family; these modules are shared, and these pairs are allowed.
MODELS_SHARED = {"autoload.models.configs"}
FAMILY_PAIRS = {("autoload.models.chatglm", "autoload.models.chatglm_chat")}  # the chat layer of its own family
# Third-party packages a layer may import besides the standard library (checked only for the layers listed).
EXTERNAL = {"nn": {"torch"}}


@dataclass(frozen=True)
class Edge:
    path: Path
    line: int
    source: str
    target: str

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line} {self.source} -> {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted((SRC / "autoload").rglob("*.py"))}


def layer(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    name = LAYER_OF.get(parts[1], parts[1])
    return name if name in ALLOWED else None


def known(target: str) -> str:
    """The module a dotted import lands on: the longest prefix that is a file of the package."""
    while target not in MODULES and "." in target:
        target = target.rpartition(".")[0]
    return target


def read_imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted name) of every import in the file, wherever it sits."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from ..x import y: climb level - 1 packages from the file's own package
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
                origin = f"{base}.{node.module}" if node.module else base
            else:
                origin = node.module
            for alias in node.names:  # `from pkg import mod` imports the module pkg.mod when there is one
                found.append((node.lineno, f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES
                              else origin))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              == "import_module" and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and node.args[0].value.startswith("autoload")):
            found.append((node.lineno, node.args[0].value))
    return found


def all_imports() -> tuple[list[Edge], list[Edge]]:
    """(edges between autoload modules, imports of anything outside autoload)."""
    inside, outside = {}, {}  # as dicts: one edge per line, however many names it imports
    for module, path in MODULES.items():
        for line, target in read_imports(module, path):
            if target == "autoload" or target.startswith("autoload."):
                if known(target) != module:
                    inside[Edge(path, line, module, known(target))] = None
            else:
                outside[Edge(path, line, module, target)] = None
    return list(inside), list(outside)


EDGES, EXTERNAL_IMPORTS = all_imports()


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_walk_sees_the_package():
    assert {"autoload", "autoload.hub", "autoload.configuration"} <= set(MODULES)
    assert len(EDGES) > 50  # relative imports resolved: the package is full of them


def test_every_module_has_a_layer():
    unmapped = sorted(module for module in MODULES if layer(module) is None)
    assert not unmapped, "modules outside every layer (add them to ALLOWED or LAYER_OF in this file):\n" + "\n".join(
        unmapped)


def test_the_table_is_acyclic():
    assert all(allowed <= set(ALLOWED) for allowed in ALLOWED.values())
    assert not cycles(ALLOWED), cycles(ALLOWED)


def test_imports_follow_the_allowed_directions():
    wrong = []
    for edge in EDGES:
        source, target = layer(edge.source), layer(edge.target)
        if source is None or target is None:
            continue  # reported by test_every_module_has_a_layer
        if source != target and target not in ALLOWED[source]:
            allowed = ", ".join(sorted(ALLOWED[source])) or "nothing of autoload"
            wrong.append(f"{edge}  ({source} may import: {allowed})")
        elif (source == target == "models" and edge.target not in MODELS_SHARED
              and (edge.source, edge.target) not in FAMILY_PAIRS):
            wrong.append(f"{edge}  (a family file imports no other family: put shared code in autoload.nn)")
    assert not wrong, f"{len(wrong)} imports against the layer table:\n" + "\n".join(wrong)


def test_no_cycles_between_layers():
    graph: dict[str, set[str]] = {}
    for edge in EDGES:
        source, target = layer(edge.source), layer(edge.target)
        if source and target and source != target:
            graph.setdefault(source, set()).add(target)
    found = cycles(graph)
    assert not found, "layer cycles:\n" + "\n".join(
        f"{' <-> '.join(sorted(component))}:\n  " + "\n  ".join(
            str(edge) for edge in EDGES if {layer(edge.source), layer(edge.target)} <= component
            and layer(edge.source) != layer(edge.target)) for component in found)


def test_no_cycles_between_modules():
    graph: dict[str, set[str]] = {}
    for edge in EDGES:
        graph.setdefault(edge.source, set()).add(edge.target)
    found = cycles(graph)
    assert not found, "module cycles (an import inside a function closes a cycle too):\n" + "\n".join(
        f"{' <-> '.join(sorted(component))}:\n  " + "\n  ".join(
            str(edge) for edge in EDGES if edge.source in component and edge.target in component)
        for component in found)


def test_external_imports_of_restricted_layers():
    allowed_everywhere = set(sys.stdlib_module_names) | {"__future__"}
    wrong = [f"{edge}  ({layer(edge.source)} may import only the standard library and "
             f"{', '.join(sorted(EXTERNAL[layer(edge.source)]))})" for edge in EXTERNAL_IMPORTS
             if layer(edge.source) in EXTERNAL
             and edge.target.split(".")[0] not in allowed_everywhere | EXTERNAL[layer(edge.source)]]
    assert not wrong, "\n".join(wrong)
