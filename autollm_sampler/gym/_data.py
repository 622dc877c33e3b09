"""Raw-data directory resolution, the pinned manifest, sha256 checks and ``gym fetch``.

The raw files are never shipped with the package. A recipe finds them in, in order:

1. the ``raw_dir`` argument;
2. the ``AUTOLLM_GYM_RAW`` environment variable;
3. the user cache (``$XDG_CACHE_HOME/autollm-sampler/gym_raw`` or ``~/.cache/...``), filled by
   ``autollm-sampler gym fetch``.

Each file lives in ``<raw_dir>/<source>/<name>`` and is checked against its pinned sha256.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from autollm_sampler._io import sha256_of
from autollm_sampler.exceptions import RawDataError

__all__ = [
    "RAW_ENV",
    "ManifestFile",
    "manifest",
    "default_cache_dir",
    "resolve_raw_dir",
    "raw_file",
    "fetch",
    "sha256_of",
]

logger = logging.getLogger(__name__)

RAW_ENV = "AUTOLLM_GYM_RAW"
_FIX = (
    "run `autollm-sampler gym fetch` to download the pinned files, or set "
    f"{RAW_ENV}=/path/to/gym_data/raw (or pass raw_dir=...)"
)


@dataclass(frozen=True)
class ManifestFile:
    source: str
    name: str
    repo: str
    commit: str
    path: str
    sha256: str
    licence: str
    citation: str

    def url(self, mirror: str | None = None) -> str:
        if mirror:
            return f"{mirror.rstrip('/')}/{self.source}/{self.name}"
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"


@lru_cache(maxsize=1)
def _manifest_data() -> dict[str, Any]:
    text = resources.files("autollm_sampler.gym").joinpath("manifest.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def manifest() -> dict[str, list[ManifestFile]]:
    """All pinned raw files, grouped by source folder."""
    out: dict[str, list[ManifestFile]] = {}
    for source, entry in _manifest_data()["sources"].items():
        out[source] = [
            ManifestFile(
                source=source,
                name=f["name"],
                repo=entry["repo"],
                commit=entry["commit"],
                path=f["path"],
                sha256=f["sha256"],
                licence=entry["licence"],
                citation=entry["citation"],
            )
            for f in entry["files"]
        ]
    return out


def source_info(source: str) -> dict[str, Any]:
    return dict(_manifest_data()["sources"][source])


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "autollm-sampler" / "gym_raw"


def resolve_raw_dir(raw_dir: str | os.PathLike[str] | None = None) -> Path:
    """The raw-data directory to read from (argument, then env var, then user cache)."""
    if raw_dir is not None:
        return Path(raw_dir)
    env = os.environ.get(RAW_ENV)
    if env:
        return Path(env)
    return default_cache_dir()


@lru_cache(maxsize=64)
def _verified(path: str, mtime: float, size: int, expected: str) -> bool:
    return sha256_of(Path(path)) == expected


def raw_file(source: str, name: str, raw_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of one pinned raw file, verified against its sha256.

    Raises:
        RawDataError: if the file is missing or its content differs from the pinned version.
    """
    entries = {f.name: f for f in manifest().get(source, [])}
    if name not in entries:
        raise RawDataError(f"{source}/{name} is not in the gym manifest")
    root = resolve_raw_dir(raw_dir)
    path = root / source / name
    if not path.is_file():
        raise RawDataError(f"raw data file {str(path)!r} is missing; {_FIX}")
    st = path.stat()
    if not _verified(str(path.resolve()), st.st_mtime, st.st_size, entries[name].sha256):
        raise RawDataError(
            f"raw data file {str(path)!r} does not match its pinned sha256 {entries[name].sha256[:12]}...; "
            f"it was modified or is another version. {_FIX}"
        )
    return path


def fetch(
    dest: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    sources: list[str] | None = None,
    progress: bool = False,
) -> Path:
    """Download every pinned raw file into ``dest`` (default: the user cache) and verify it.

    ``mirror`` replaces the GitHub URL with ``<mirror>/<source>/<name>``; ``file://`` URLs work, which is
    how the tests exercise this without a network. Files already present with the right hash are kept.
    """
    root = Path(dest) if dest is not None else default_cache_dir()
    files = [f for s, fs in manifest().items() if sources is None or s in sources for f in fs]
    iterator: Any = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc="gym fetch", unit="file")
    for f in iterator:
        target = root / f.source / f.name
        if target.is_file() and sha256_of(target) == f.sha256:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        url = f.url(mirror)
        logger.info("downloading %s", url)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            try:
                with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - pinned URLs only
                    shutil.copyfileobj(resp, tmp)
            except Exception as exc:
                Path(tmp.name).unlink(missing_ok=True)
                raise RawDataError(f"could not download {url}: {exc}") from None
        got = sha256_of(Path(tmp.name))
        if got != f.sha256:
            Path(tmp.name).unlink(missing_ok=True)
            raise RawDataError(f"{url} has sha256 {got[:12]}..., expected {f.sha256[:12]}...; refusing it")
        os.replace(tmp.name, target)
    return root
