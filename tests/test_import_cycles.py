"""No import cycle in the package: module A importing B while B (directly or through
others) imports A works only in some import orders, and breaks when a user imports B
first. Read from the source, every import statement counted, those inside functions
too: a function-level import hides a cycle from the interpreter, not from the reader,
who still cannot understand either module without the other."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "videofusion_jax"


def module_name(path: Path, root: Path = PACKAGE) -> str:
  parts = path.relative_to(root.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.stmt, module: str, is_package: bool, modules: set[str]) -> set[str]:
  """The package's modules that the statement `node` of `module` imports."""
  if isinstance(node, ast.Import):
    return {a.name for a in node.names if a.name in modules}
  if not isinstance(node, ast.ImportFrom):
    return set()
  base = node.module or ""
  if node.level:  # relative: from the module's own package, up level - 1
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    base = ".".join(package + ([base] if base else []))
  found = set()
  for alias in node.names:
    if f"{base}.{alias.name}" in modules:  # `from pkg import submodule`
      found.add(f"{base}.{alias.name}")
    elif base in modules:
      found.add(base)
  return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
  paths = {module_name(p, root): p for p in root.rglob("*.py")}
  modules = set(paths)
  return {
    m: set().union(
      *(
        imported(n, m, p.name == "__init__.py", modules) for n in ast.walk(ast.parse(p.read_text()))
      )
    )
    - {m}
    for m, p in paths.items()
  }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph[v]:
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while not component or component[-1] != v:
        component.append(stack.pop())
        on_stack.discard(component[-1])
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_the_package_has_no_import_cycle():
  graph = import_graph()
  assert len(graph) > 50 and "videofusion_jax.sampling.generate" in graph  # it read the package
  assert cycles(graph) == []


def test_a_cycle_is_found_when_there_is_one(tmp_path):
  root = tmp_path / "videofusion_jax"
  (root / "sub").mkdir(parents=True)
  (root / "__init__.py").write_text("")
  (root / "a.py").write_text("from videofusion_jax import b\n")
  (root / "b.py").write_text("import os\n\ndef f():\n  from videofusion_jax import a\n")
  (root / "e.py").write_text("from videofusion_jax import a\n")
  (root / "sub" / "__init__.py").write_text("from . import c\n")
  (root / "sub" / "c.py").write_text("from videofusion_jax.sub import d\n")
  (root / "sub" / "d.py").write_text("from .c import x\n")
  assert cycles(import_graph(root)) == [
    ["videofusion_jax.a", "videofusion_jax.b"],
    ["videofusion_jax.sub.c", "videofusion_jax.sub.d"],
  ]
