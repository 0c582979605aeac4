"""Remote code: the classes a repo names in its `auto_map` and ships as Python files.

Such code runs only after the user says so. `resolve_trust` decides from `trust_remote_code` and whether a
built-in class exists; until then only config.json / tokenizer_config.json have been read. `get_class` then
fetches the module and every file it imports relatively, at one commit, through the hub cache; copies them
into the modules cache as a package; checks its third-party imports; and imports it.

Modules cache (`AUTOLOAD_MODULES_CACHE`, `HF_MODULES_CACHE`, else `$HF_HOME/modules`), added to `sys.path`:
    autoload_modules/<org>/<repo>/<commit>/<module>.py       hub repos (names sanitized, see `sanitize`)
    autoload_modules/local/<folder>/<sha256[:16]>/<module>.py local folders (hash of all their .py files)
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import keyword
import logging
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("autoload")

PACKAGE = "autoload_modules"
_LOCK = threading.RLock()  # one copy+import at a time: sys.modules and the cache folder are shared
_COMMIT = re.compile(r"[0-9a-f]{40}")


class UntrustedCodeError(ValueError):
    """The model needs code from its repo and `trust_remote_code=True` was not given."""


@dataclass(frozen=True)
class CodeReference:
    """An `auto_map` entry: `module.Class`, or `org/repo--module.Class` for code kept in another repo."""
    repo: str | None
    module: str
    name: str

    @property
    def filename(self) -> str:
        return f"{self.module}.py"

    def describe(self) -> str:
        return self.filename + (f" (from repo '{self.repo}')" if self.repo else "")


def parse_reference(reference: str) -> CodeReference:
    """Split an auto_map reference; refuse anything but identifiers (no paths, no `..`)."""
    repo, _, rest = reference.rpartition("--") if isinstance(reference, str) else ("", "", "")
    module, _, name = rest.partition(".")
    if not (module.isidentifier() and name.isidentifier()) or keyword.iskeyword(module) or module.startswith("__"):
        raise ValueError(f"Invalid remote code reference {reference!r}: expected 'module.Class' or "
                         "'org/repo--module.Class' with Python identifiers for the module and the class.")
    if repo:
        from ..hub.paths import validate_repo_id
        from ..hub.errors import InvalidRepoIdError
        try:
            validate_repo_id(repo)
        except InvalidRepoIdError as err:
            raise ValueError(f"Invalid repo in remote code reference {reference!r}: {err}") from None
    return CodeReference(repo or None, module, name)


def resolve_trust(trust_remote_code: bool | None, *, source, references: list[str], has_builtin: bool) -> bool:
    """Whether to run the repo's code: an explicit True/False wins; with None, a built-in class wins.

    Raises `UntrustedCodeError` (a ValueError) when only remote code can load the model and it is not trusted.
    Nothing is downloaded or executed here."""
    parsed = [parse_reference(r) for r in references if r]
    if trust_remote_code:
        return True
    if has_builtin:
        if trust_remote_code is None:
            logger.info("%s ships its own code (%s); it is ignored and autoload's built-in class is used. Pass "
                        "trust_remote_code=True to run the repo's code instead.", source.describe(),
                        ", ".join(r.describe() for r in parsed))
        return False
    files = ", ".join(dict.fromkeys(r.describe() for r in parsed))
    said = "trust_remote_code=False was passed, but " if trust_remote_code is False else ""
    raise UntrustedCodeError(
        f"{said}{source.describe()} contains custom code which must be executed to load it: {files}, and the "
        "files they import with 'from .x import ...'. autoload has no built-in class for it. Read those files, "
        "then pass trust_remote_code=True (and revision='<commit>' so the code you read is the code that runs).")


def get_class(reference: str, source, *, code_revision: str | None = None) -> type:
    """Fetch, cache and import the class named by an auto_map `reference` of `source` (a FileSource).

    The code comes from the source's resolved commit, or from `code_revision` when given (the code's own
    revision, for the same repo or for `org/repo--module.Class` references)."""
    ref = parse_reference(reference)
    code = _code_source(ref, source, code_revision)
    sources, missing = _fetch_closure(code, ref.filename)
    if missing:
        raise ImportError(f"The code of {code.describe()} ({', '.join(sorted(sources))}) needs packages that are "
                          f"not installed: {', '.join(missing)}. Run `pip install {' '.join(missing)}`.")
    if code.is_local:  # keyed by all the folder's .py files, so its config and model code share one package
        parts = ["local", sanitize(Path(code.folder).resolve().name), _digest(_folder_sources(code.folder))[:16]]
    elif code.commit:
        parts = [*(sanitize(p) for p in code.name.split("/")), code.commit]
    else:  # ModelScope names no commits: key by all the repo's .py files, so config and model share a package
        everything = {rel: Path(path).read_bytes() for rel, path in code.fetch(["*.py"]).items()}
        parts = [*(sanitize(p) for p in code.name.split("/")), _digest({**everything, **sources})[:16]]
    with _LOCK:
        module, added = _import(parts, sources, ref.module)
    where = f"commit {code.commit}" if code.commit else f"source hash {parts[-1]}"
    logger.info("Remote code %s.%s from %s: %s at %s (cached in %s).", ref.module, ref.name, code.describe(),
                ", ".join(sorted(sources)), where, os.path.dirname(module.__file__))
    if added and not code.is_local and code.commit and not _COMMIT.fullmatch(code.requested_revision):
        logger.warning("A new version of the following files was downloaded from %s: %s (commit %s). Make sure "
                       "they contain no malicious code. To run exactly this code next time, pin a revision: "
                       "revision='%s' (or code_revision='%s' for the code alone).", code.describe(),
                       ", ".join(sorted(added)), code.commit, code.commit, code.commit)
    elif added and not code.is_local and not code.commit:
        logger.warning("A new version of the following files was downloaded from %s: %s (source hash %s). Make "
                       "sure they contain no malicious code; this hub names no commits, so the same revision can "
                       "bring other code later.", code.describe(), ", ".join(sorted(added)), parts[-1])
    found = getattr(module, ref.name, None)
    if not isinstance(found, type):
        raise AttributeError(f"{ref.filename} of {code.describe()} defines no class '{ref.name}' "
                             f"(auto_map reference {reference!r}).")
    return found


def modules_cache() -> str:
    """`AUTOLOAD_MODULES_CACHE`, else `HF_MODULES_CACHE`, else `$HF_HOME/modules`."""
    from ..hub.settings import hf_home
    path = os.environ.get("AUTOLOAD_MODULES_CACHE") or os.environ.get("HF_MODULES_CACHE")
    return os.path.realpath(os.path.expanduser(path) if path else os.path.join(hf_home(), "modules"))


def sanitize(name: str) -> str:
    """A repo or folder name as a package name: '.' -> '_dot_', '-' -> '_hyphen_', leading digit -> '_'."""
    name = re.sub(r"\W", "_", name.replace(".", "_dot_").replace("-", "_hyphen_"))
    if not name or name[0].isdigit():
        name = "_" + name
    return name + "_" if keyword.iskeyword(name) else name


def _code_source(ref: CodeReference, source, code_revision: str | None):
    from ..hub.source import FileSource
    options = dict(token=source.token, cache_dir=source.cache_dir, local_files_only=source.local_files_only,
                   endpoint=source.endpoint, hub=source.hub)  # the code's repo: on the same hub
    if ref.repo is not None:
        return FileSource(ref.repo, revision=code_revision, **options)
    if code_revision is not None and not source.is_local:
        return FileSource(source.name, revision=code_revision, **options)
    return source


def _fetch_closure(code, first: str) -> tuple[dict[str, bytes], list[str]]:
    """({repo path: source} of `first` and of every file it imports relatively, recursively;
    third-party packages it imports at top level that cannot be found)."""
    sources: dict[str, bytes] = {}
    absolute: set[str] = set()
    wanted = {first}
    while wanted:
        got = code.fetch(sorted(wanted))  # one level of the import graph per fetch, at the pinned commit
        for rel in sorted(wanted):
            if rel not in got:
                raise OSError(f"{code.describe()} has no file '{rel}', which its remote code needs"
                              f"{'' if rel == first else ' (imported relatively)'}.")
            sources[rel] = Path(got[rel]).read_bytes()
        found = set()
        for rel in wanted:
            relative, top = _imports(sources[rel], rel)
            found |= relative
            absolute |= top
        wanted = found - sources.keys()
    missing = sorted(name for name in absolute if name != "__future__" and not _importable(name))
    return sources, missing


def _imports(text: bytes, rel: str) -> tuple[set[str], set[str]]:
    """(repo paths of the relative imports anywhere in the file, top-level packages imported at module level
    outside try blocks). Parsed with `ast`: nothing is executed."""
    tree = ast.parse(text, filename=rel)
    folder = rel.split("/")[:-1]
    relative = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            if node.level - 1 > len(folder):
                raise ImportError(f"{rel}: 'from {'.' * node.level}{node.module or ''} import ...' reaches "
                                  "outside the repo's code; refusing it.")
            base = folder[:len(folder) - (node.level - 1)]
            names = [node.module.split(".")] if node.module else [[a.name] for a in node.names if a.name != "*"]
            relative |= {"/".join(base + name) + ".py" for name in names}
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            top.add(node.module.split(".")[0])
    return relative, top


def _importable(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _folder_sources(folder: str) -> dict[str, bytes]:
    root = Path(folder)
    paths = (p.relative_to(root) for p in root.rglob("*.py"))
    return {p.as_posix(): (root / p).read_bytes() for p in paths
            if not any(part.startswith(".") or part == "__pycache__" for part in p.parts)}


def _digest(sources: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(sources):
        h.update(rel.encode() + b"\0" + hashlib.sha256(sources[rel]).digest())
    return h.hexdigest()


_ROOT: list[str] = []  # the modules cache this process put on sys.path


def _activate(root: str) -> None:
    """Put `root` on sys.path once; if the modules cache moved (env changed), forget the old package."""
    if _ROOT and _ROOT[0] != root:
        if _ROOT[0] in sys.path:
            sys.path.remove(_ROOT[0])
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        _ROOT.clear()
    if not _ROOT:
        _ROOT.append(root)
        if root not in sys.path:
            sys.path.append(root)


def _import(parts: list[str], sources: dict[str, bytes], module: str):
    """Copy `sources` into the package `autoload_modules.<parts>` and import `module` from it.
    Returns (module, files newly added to the modules cache)."""
    root = modules_cache()
    _activate(root)
    package_dir = Path(root, PACKAGE, *parts)
    added, changed = [], []
    for level in range(len(parts) + 1):
        _write(Path(root, PACKAGE, *parts[:level], "__init__.py"), b"")
    for rel, content in sorted(sources.items()):
        for depth in range(1, rel.count("/") + 1):
            _write(package_dir.joinpath(*rel.split("/")[:depth], "__init__.py"), b"")
        state = _write(package_dir / rel, content)
        if state == "added":
            added.append(rel)
        elif state == "changed":
            changed.append(rel)
    package = ".".join([PACKAGE, *parts])
    if changed:  # the cached copy differed from the source: drop stale modules and their bytecode
        logger.warning("Replaced edited copies of %s in %s.", ", ".join(changed), package_dir)
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
        for rel in changed:
            shutil.rmtree((package_dir / rel).parent / "__pycache__", ignore_errors=True)
    importlib.invalidate_caches()
    imported = importlib.import_module(f"{package}.{module}")
    imported.__autoload_hash__ = _digest(sources)
    return imported, added


def _write(path: Path, content: bytes) -> str:
    """Write atomically unless the file already holds `content`: 'same', 'added' or 'changed'."""
    try:
        if path.read_bytes() == content:
            return "same"
        state = "changed"
    except FileNotFoundError:
        state = "added"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    partial.write_bytes(content)
    os.replace(partial, path)
    return state
