"""Run and data paths that may live on remote storage (``gs://bucket/path``), through ``etils.epath``.

    as_path("gs://b/run")  -> epath.Path("gs://b/run")          (read and written through gcsfs)
    as_path("runs/x")      -> pathlib.Path("/abs/cwd/runs/x")   (local paths are made absolute)
    local_data_dir("gs://b/shards") -> a local mirror of the shard folder (ArrayRecord reads local files)
    LocalStage(remote_dir) -> a local folder whose files are copied to ``remote_dir`` on ``sync()``

``pathlib.Path("gs://b/run").absolute()`` is ``./gs:/b/run``: every run, data, checkpoint and output
path goes through :func:`as_path` instead. Remote storage needs ``gcsfs`` installed (``pip install gcsfs``).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from etils import epath

CACHE_ENV = "FER_JAX_DATA_CACHE"  # where gs:// shard folders are mirrored (default: <tmp>/fer_jax_data_cache)
_MARKERS = ("_BUILD_COMPLETE", "manifest.json")  # a mirror is current when both match the remote copies


def is_remote(path: str | os.PathLike) -> bool:
    """True for a URI path (``gs://``, ``s3://``, ...), False for a local one."""
    return "://" in os.fspath(path)


def as_path(path: str | os.PathLike) -> Path | epath.Path:
    """``path`` as a path object: ``epath.Path`` for a URI (never made 'absolute'), else an absolute,
    user-expanded ``pathlib.Path``."""
    if isinstance(path, epath.Path) and not isinstance(path, Path):
        return path
    s = os.fspath(path)
    if is_remote(s):
        return epath.Path(s)
    return Path(s).expanduser().absolute()


def copy_tree(src: Path | epath.Path, dst: Path | epath.Path, *, last: str | None = None) -> int:
    """Copies every file under ``src`` to the same relative path under ``dst`` (overwriting); returns the
    number of files. Works across local and remote paths; ``**`` globs are avoided (epath refuses them
    on GCS). ``last``: a top-level file copied after all others (a completion marker: a reader that
    finds it finds everything else)."""
    n = 0
    for rel, files in _walk(src):
        out = dst.joinpath(*rel)
        if files:
            out.mkdir(parents=True, exist_ok=True)
        for name in files:
            if rel or name != last:
                (out / name).write_bytes(src.joinpath(*rel, name).read_bytes())
                n += 1
    if last is not None and (src / last).exists():
        (dst / last).write_bytes((src / last).read_bytes())
        n += 1
    return n


def _walk(top: Path | epath.Path, rel: tuple[str, ...] = ()):
    """``(relative parts, file names)`` of every folder under ``top`` (pathlib has no walk on 3.11)."""
    files, dirs = [], []
    for p in top.joinpath(*rel).iterdir():
        (dirs if p.is_dir() else files).append(p.name)
    yield rel, sorted(files)
    for d in sorted(dirs):
        yield from _walk(top, (*rel, d))


def _cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "fer_jax_data_cache")


def mirror_dir(data_dir: str | os.PathLike) -> Path:
    """The local folder that mirrors the remote folder ``data_dir``:
    ``$FER_JAX_DATA_CACHE/<scheme>/<bucket>/<path>`` (default under ``<tmp>/fer_jax_data_cache``)."""
    scheme, rest = os.fspath(data_dir).split("://", 1)
    return _cache_root() / scheme / rest.strip("/")


def is_mirrored(remote: str | os.PathLike, local: Path) -> bool:
    """True when ``local`` holds the same finished build as ``remote`` (same completion marker and
    manifest)."""
    return _same_markers(epath.Path(os.fspath(remote)), local)


def _same_markers(remote: epath.Path, local: Path) -> bool:
    try:
        return all((local / m).read_bytes() == (remote / m).read_bytes() for m in _MARKERS)
    except (OSError, FileNotFoundError):
        return False


def local_data_dir(data_dir: str | os.PathLike, *, quiet: bool = False) -> Path:
    """A local folder holding ``data_dir``'s files: ``data_dir`` itself when local; for a remote folder,
    its mirror under ``$FER_JAX_DATA_CACHE`` (default ``<tmp>/fer_jax_data_cache/<scheme>/<bucket>/<path>``),
    copied once and again only when the remote ``_BUILD_COMPLETE`` or ``manifest.json`` changed.

    Why a mirror: ArrayRecord's reader opens files with the C++ file API, which does not read ``gs://``
    (an ``ArrayRecordReader("gs://...")`` hung against a GCS emulator). The copy goes to a temporary
    sibling and is renamed into place, so concurrent readers (grain workers, other processes) never see
    half a mirror."""
    if not is_remote(data_dir):
        return as_path(data_dir)
    remote, local = epath.Path(os.fspath(data_dir)), mirror_dir(data_dir)
    if _same_markers(remote, local):
        return local
    if not quiet:
        print(f"mirroring {remote} to the local cache {local} (ArrayRecord reads local files)", flush=True)
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.partial")
    n = copy_tree(remote, tmp)
    if _same_markers(remote, local):  # another process (a grain worker, another host's job) finished first
        _rmtree(tmp)
        return local
    if local.exists():
        old = local.with_name(f".{local.name}.{uuid.uuid4().hex[:8]}.old")
        local.rename(old)
        _rmtree(old)
    try:
        tmp.rename(local)
    except OSError:  # another process put an identical mirror in place first
        _rmtree(tmp)
    if not quiet:
        print(f"mirrored {n} files of {remote}", flush=True)
    return local


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


class LocalStage:
    """Files that cannot be written in place on remote storage (an appended ``metrics.jsonl``,
    TensorBoard event files, profiler traces): written under ``local`` and copied to ``remote`` by
    :meth:`sync`. For a local ``remote`` the stage is ``remote`` itself and ``sync`` does nothing."""

    def __init__(self, remote: str | os.PathLike, name: str = "stage"):
        self.remote = as_path(remote)
        self.staged = is_remote(self.remote)
        if self.staged:
            self.local = Path(tempfile.mkdtemp(prefix=f"fer_jax_{name}_"))
        else:
            self.local = self.remote

    def pull(self, *names: str) -> None:
        """Copies the remote files ``names`` (when present) into the stage: a resumed run appends to them."""
        if not self.staged:
            return
        for name in names:
            src = self.remote / name
            if src.exists():
                dst = self.local / name
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(src.read_bytes())

    def sync(self) -> None:
        """Copies every staged file to the remote folder."""
        if self.staged and self.local.exists():
            copy_tree(self.local, self.remote)

    def close(self) -> None:
        """A last :meth:`sync`, then the local stage is removed (a local ``remote`` is left as it is)."""
        if self.staged:
            self.sync()
            _rmtree(self.local)


def savefig(fig, path: str | os.PathLike, **kwargs) -> Path | epath.Path:
    """``fig.savefig`` to a local or remote path (matplotlib writes only local files by name); creates the
    folder; returns the path."""
    path = as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(path):
        with path.open("wb") as f:
            fig.savefig(f, format=path.suffix.lstrip(".") or "png", **kwargs)
    else:
        fig.savefig(path, **kwargs)
    return path


def path_of(path: str | os.PathLike) -> Path | epath.Path:
    """``path`` as a path object without making a local one absolute (for paths echoed back to the user
    as given): ``epath.Path`` for a URI, else ``pathlib.Path``."""
    return epath.Path(os.fspath(path)) if is_remote(path) else Path(path)


def files_under(top: Path | epath.Path) -> list[Path | epath.Path]:
    """Every file below ``top``, at any depth (``rglob`` for remote folders too: epath refuses ``**``
    globs on GCS)."""
    return [top.joinpath(*rel, name) for rel, files in _walk(top) for name in files]
