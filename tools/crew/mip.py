"""micropython-lib packages for the device: a local index cache, and mip installs from it.

The index format is micropython.org's "v2" package index, which `mip` on the device and
`mpremote mip` read (micropython docs, reference/packages.rst):

```
<index>/package/<mpy version>/<name>/<version>.json
        {"v": 1, "version": "0.2.0", "hashes": [["lora/modem.mpy", "9c2f4a1b"], …],
         "deps": [["lora", "latest"], …]}
<index>/file/<hash[:2]>/<hash>          the file whose SHA-256 starts with <hash>
```

`fetch_deps` mirrors the packages a role needs (and their dependencies) into a folder
in the same layout, so crews work offline: ``--index CACHE`` then reads from it.
`install` is mip over the device's raw REPL (an mpremote transport): it checks every
file against its hash before writing it, skips files already there, and returns what
it installed so the flash can verify it by reading the hashes back.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.crew import CrewError

DEFAULT_INDEX = "https://micropython.org/pi/v2"
MPY_VERSION = "6"  # .mpy bytecode v6: MicroPython 1.20 and later, our 1.27/1.29 included
TIMEOUT_S = 20.0


class IndexProblem(CrewError):
    """The package index could not be read, or holds something wrong."""


def _is_url(index: str) -> bool:
    return urllib.parse.urlsplit(index).scheme in ("http", "https", "file")


class Index:
    """A package index: an http(s):// or file:// URL, or a local folder (a cache)."""

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/")

    def read(self, rel: str) -> bytes:
        if _is_url(self.location):
            url = f"{self.location}/{rel}"
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                    data: bytes = response.read()
                    return data
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise IndexProblem(f"{url}: not in the package index (404)") from None
                raise IndexProblem(f"{url}: HTTP {exc.code}") from None
            except urllib.error.URLError as exc:
                raise IndexProblem(
                    f"cannot reach the package index {self.location} ({exc.reason}): work "
                    "offline with --index CACHE, a copy made by `anshim firmware fetch-deps`"
                ) from None
            except (TimeoutError, OSError) as exc:
                raise IndexProblem(
                    f"cannot reach the package index {self.location} ({exc})"
                ) from None
        path = Path(self.location) / rel
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise IndexProblem(
                f"{path} is missing: the cache {self.location} lacks it (run "
                "`anshim firmware fetch-deps` again)"
            ) from None
        except OSError as exc:
            raise IndexProblem(f"{path}: {exc.strerror}") from None


@dataclass(frozen=True)
class PackageFile:
    package: str
    path: str  # relative to the lib folder, e.g. "lora/modem.mpy"
    short_hash: str  # hex prefix of its SHA-256, as the index names it

    @property
    def rel(self) -> str:
        return f"file/{self.short_hash[:2]}/{self.short_hash}"


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    files: tuple[PackageFile, ...]
    deps: tuple[str, ...]
    json_rel: str
    raw: bytes


def _package(index: Index, name: str, mpy: str) -> Package:
    rel = f"package/{mpy}/{name}/latest.json"
    raw = index.read(rel)
    try:
        meta: dict[str, Any] = json.loads(raw)
        files = tuple(PackageFile(name, str(p), str(h)) for p, h in meta.get("hashes", ()))
        deps = tuple(str(d[0]) for d in meta.get("deps", ()))
        version = str(meta.get("version", "?"))
    except (ValueError, TypeError, IndexError, AttributeError):
        raise IndexProblem(f"{index.location}/{rel} is not a package description") from None
    if meta.get("urls"):
        raise IndexProblem(f"{name}: packages with urls (not hashes) are not supported")
    return Package(name, version, files, deps, rel, raw)


def resolve(index: Index, names: Iterable[str], mpy: str = MPY_VERSION) -> list[Package]:
    """The packages and their dependencies, each once, dependencies first."""
    done: dict[str, Package] = {}
    order: list[Package] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in path:
            raise IndexProblem(f"dependency cycle: {' -> '.join((*path, name))}")
        pkg = _package(index, name, mpy)
        for dep in pkg.deps:
            visit(dep, (*path, name))
        done[name] = pkg
        order.append(pkg)

    for n in names:
        visit(n, ())
    return order


def _checked(index: Index, f: PackageFile) -> bytes:
    data = index.read(f.rel)
    if not hashlib.sha256(data).hexdigest().startswith(f.short_hash):
        raise IndexProblem(f"{index.location}/{f.rel}: content does not match its hash")
    return data


@dataclass(frozen=True)
class FetchResult:
    out: Path
    packages: list[Package]
    files: int
    bytes: int


def fetch_deps(
    index_url: str,
    out: Path,
    names: Iterable[str],
    *,
    mpy_versions: Iterable[str] = (MPY_VERSION,),
    progress: Callable[[int, int], None] | None = None,
) -> FetchResult:
    """Copy the packages (and dependencies) from an index into ``out``, same layout."""
    index = Index(index_url)
    names = list(names)
    plan: list[Package] = []
    for mpy in mpy_versions:
        plan += resolve(index, names, mpy)
    wanted = {f.rel: f for pkg in plan for f in pkg.files}
    total = len(wanted) + len(plan)
    done = size = 0
    for f in wanted.values():
        target = out / f.rel
        if not (
            target.is_file()
            and hashlib.sha256(target.read_bytes()).hexdigest().startswith(f.short_hash)
        ):
            _write(target, _checked(index, f))
        size += target.stat().st_size
        done += 1
        if progress is not None:
            progress(done, total)
    for pkg in plan:  # descriptions last: a cache never lists a file it does not hold
        _write(out / pkg.json_rel, pkg.raw)
        done += 1
        if progress is not None:
            progress(done, total)
    return FetchResult(out, plan, len(wanted), size)


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


@dataclass(frozen=True)
class Installed:
    path: str  # on the device
    sha256: str
    package: str
    written: bool  # False: it was already there with the right hash


def install(
    transport: Any,
    index_url: str,
    names: Iterable[str],
    *,
    target: str = "/lib",
    mpy: str = MPY_VERSION,
    write: Callable[[Any, str, bytes], None],
    progress: Callable[[int, int], None] | None = None,
) -> list[Installed]:
    """mip-install the packages onto the device behind ``transport`` (raw REPL)."""
    index = Index(index_url)
    plan = resolve(index, names, mpy)
    files = [f for pkg in plan for f in pkg.files]
    out: list[Installed] = []
    for i, f in enumerate(files):
        dest = f"{target.rstrip('/')}/{f.path}"
        data = _checked(index, f)
        digest = hashlib.sha256(data).hexdigest()
        there = _device_hash(transport, dest)
        if there != digest:
            write(transport, dest, data)
        out.append(Installed(dest, digest, f.package, there != digest))
        if progress is not None:
            progress(i + 1, len(files))
    return out


def _device_hash(transport: Any, path: str) -> str | None:
    from mpremote.transport import TransportError  # type: ignore[import-untyped]

    try:
        return str(transport.fs_hashfile(path, "sha256").hex())
    except (OSError, TransportError):
        return None
