"""The package's layering, read from the source: every module of ``ace`` sits in a layer, imports
only from its own layer or below, and no imports form a cycle; nothing but the command line
imports ``ace.cli``.

Imports are read with ``ast``, function-local ones included. Exempt: imports inside a package
``__init__``'s module-level ``__getattr__`` (lazy re-exports such as ``ace.fit`` or
``ace.ACEPotential``), which run only when a user asks for the name, after every module has
loaded. An import of ``a.b.c`` counts as an edge to ``a.b.c`` (the parents' ``__init__`` files
run too, but a package whose submodules import each other is no cycle).
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ace"

# bottom to top: a module may import from its own layer and the ones below. The longest
# prefix names a module's layer; entries for modules that do not exist yet are intended.
LAYERS = {
    "ace": 0,  # the root package: __version__ and lazy re-exports
    "ace.limits": 0,  # documented size bounds; imports nothing of ace
    "ace._core": 1,  # the compiled kernels
    "ace.basis": 2,
    "ace.potential": 3,
    "ace.neighbours": 3,
    "ace.physical": 3,  # traditional forms (BOP, EAM): kernels wrappers and their potential file
    "ace.evaluator": 4,
    "ace.physically_informed": 4,  # physical form with per-atom parameters from an ACE basis
    "ace.pace": 5,  # PACE formats
    "ace.uncertainty": 6,  # active set, extrapolation grade, committees
    "ace.io": 7,  # load any potential file, export
    "ace.calculator": 8,
    "ace.data": 9,
    "ace.stream": 9,  # streamed datasets: chunks of many files, the per-structure numbers
    "ace.pacemaker_data": 9,
    "ace.fitting": 10,  # lbfgs, config, linear, metrics, nonlinear, workflow
    "ace.validation": 11,
    "ace.learn": 11,  # the active-learning loop (MD, selection, labelling, refit)
    "ace.testing": 11,  # numerical checks of a calculator (forces, stress, invariance)
    "ace.api": 12,  # ace.fit / evaluate / load / export
    "ace.cli": 13,  # argument parsing only
}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(folder):
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


MODULES = {module_name(p): p for p in source_files(PACKAGE)}
# compiled modules are imported too: they are modules of their layer
KNOWN = set(MODULES) | {module_name(p) for p in PACKAGE.rglob("*.pyx")}


def layer(module):
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return LAYERS[max(prefixes, key=len)] if prefixes else None


def lazy_reexports(tree, path):
    """The import nodes inside a package __init__'s module-level __getattr__."""
    if path.name != "__init__.py":
        return set()
    return {id(node) for function in tree.body
            if isinstance(function, ast.FunctionDef) and function.name == "__getattr__"
            for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))}


def imported_modules(path, exempt_lazy=True):
    """(line, module) of every import of path, resolved to the deepest module that exists."""
    tree = ast.parse(path.read_text(), str(path))
    lazy = lazy_reexports(tree, path) if exempt_lazy else set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent / "x")
    out = []
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                out.append((node.lineno, candidate if candidate in KNOWN else base))
    return out


def ace_imports(path):
    return [(line, m) for line, m in imported_modules(path)
            if m == "ace" or m.startswith("ace.")]


def test_every_module_has_a_layer():
    assert MODULES, "no modules found"
    missing = sorted(m for m in MODULES if layer(m) is None)
    assert not missing, f"modules without a layer (add them to LAYERS): {missing}"


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for module, path in MODULES.items():
        for line, target in ace_imports(path):
            if layer(target) is not None and layer(target) > layer(module):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {module} (layer "
                              f"{layer(module)}) imports {target} (layer {layer(target)})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def import_cycles(graph):
    """The strongly connected components of more than one module, or with a self-loop
    (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, cycles, counter = {}, {}, set(), [], [], [0]

    def visit(root):
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.get(node, ()):
                        cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"a"}}) == [["a"]]
    assert import_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycles():
    graph = {module: {target for _, target in ace_imports(path) if target in MODULES}
             for module, path in MODULES.items()}
    assert import_cycles(graph) == []


def test_lazy_reexports_are_the_only_exemption():
    """The exemption covers __getattr__ in package __init__ files and nothing else: the same
    scan without it sees the root package's lazy imports."""
    root = PACKAGE / "__init__.py"
    lazy = {m for _, m in imported_modules(root, exempt_lazy=False)} - {
        m for _, m in imported_modules(root)}
    assert lazy and all(layer(m) > layer("ace") for m in lazy)


@pytest.mark.parametrize("folder", ["ace", "potentials", "benchmarks"])
def test_nothing_outside_the_cli_imports_it(folder):
    """The command line is argument parsing over the library: the library, the shipped
    potentials' scripts and the benchmarks call the library, never ``ace.cli`` (tests of the
    command line do, by their nature)."""
    offenders = []
    for path in source_files(ROOT / folder):
        if (PACKAGE / "cli") in path.parents:
            continue
        for line, target in imported_modules(path, exempt_lazy=False):
            if target == "ace.cli" or target.startswith("ace.cli."):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    assert not offenders, "\n".join(offenders)
