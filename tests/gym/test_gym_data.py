"""Raw-data resolution, sha256 checks and ``gym fetch`` against a local file:// mirror (no network)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from autollm_sampler import gym
from autollm_sampler.cli import main
from autollm_sampler.exceptions import RawDataError
from autollm_sampler.gym._data import default_cache_dir, raw_file, resolve_raw_dir, sha256_of
from autollm_sampler.gym.recipes import admire


def _copy_tree(src: Path, dst: Path, sources: list[str] | None = None) -> Path:
    for f in src.rglob("*"):
        if f.is_file() and (sources is None or f.parent.name in sources):
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f.read_bytes())
    return dst


def test_the_shared_raw_files_match_the_manifest(raw_dir: Path) -> None:
    for source, files in gym.manifest().items():
        for f in files:
            assert sha256_of(raw_dir / source / f.name) == f.sha256, f"{source}/{f.name}"


def test_raw_dir_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gym.RAW_ENV, str(tmp_path / "env"))
    assert resolve_raw_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_raw_dir() == tmp_path / "env"
    monkeypatch.delenv(gym.RAW_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_raw_dir() == default_cache_dir() == tmp_path / "cache" / "autollm-sampler" / "gym_raw"


def test_missing_file_names_the_file_and_the_fix(raw_dir: Path, tmp_path: Path) -> None:
    root = _copy_tree(raw_dir, tmp_path / "raw", ["admire_ift_runs"])
    (root / "admire_ift_runs" / "admire_ift_runs.csv").unlink()
    with pytest.raises(RawDataError) as err:
        admire.build(raw_dir=root)
    msg = str(err.value)
    assert str(root / "admire_ift_runs" / "admire_ift_runs.csv") in msg and "is missing" in msg
    assert "autollm-sampler gym fetch" in msg and gym.RAW_ENV in msg


def test_modified_file_names_the_file_and_the_fix(raw_dir: Path, tmp_path: Path) -> None:
    root = _copy_tree(raw_dir, tmp_path / "raw", ["admire_ift_runs"])
    path = root / "admire_ift_runs" / "admire_ift_runs.csv"
    data = bytearray(path.read_bytes())
    data[-5] = ord("9") if data[-5] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    with pytest.raises(RawDataError) as err:
        gym.make("admire-ift-v1", raw_dir=root)
    msg = str(err.value)
    assert str(path) in msg and "does not match its pinned sha256 703b061d3620" in msg
    assert "autollm-sampler gym fetch" in msg and gym.RAW_ENV in msg
    # the licence file is checked too
    path.write_bytes((raw_dir / "admire_ift_runs" / "admire_ift_runs.csv").read_bytes())
    (root / "admire_ift_runs" / "LICENSE.txt").write_text("no licence")
    with pytest.raises(RawDataError, match="LICENSE.txt"):
        admire.build(raw_dir=root)


def test_unknown_manifest_entry() -> None:
    with pytest.raises(RawDataError, match="regmix/nope.csv is not in the gym manifest"):
        raw_file("regmix", "nope.csv")


def _mirror(raw_dir: Path, tmp_path: Path) -> Path:
    return _copy_tree(raw_dir, tmp_path / "mirror")


def test_gym_fetch_from_a_file_mirror(raw_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mirror = _mirror(raw_dir, tmp_path)
    dest = tmp_path / "dest"
    rc = main(["gym", "fetch", "--dest", str(dest), "--mirror", mirror.as_uri()])
    out = capsys.readouterr().out
    n_files = sum(len(fs) for fs in gym.manifest().values())
    assert rc == 0 and f"{n_files} raw files verified in {dest}" in out and gym.RAW_ENV in out
    for source, files in gym.manifest().items():
        for f in files:
            assert hashlib.sha256((dest / source / f.name).read_bytes()).hexdigest() == f.sha256
    # the fetched directory is a working raw-data directory
    task = gym.make("regmix-v1", raw_dir=dest)
    assert task.n_rows == 1088
    # a second fetch keeps the verified files (nothing to download: an empty mirror is fine)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["gym", "fetch", "--dest", str(dest), "--mirror", empty.as_uri()]) == 0


def test_gym_fetch_one_source_only(raw_dir: Path, tmp_path: Path) -> None:
    mirror = _mirror(raw_dir, tmp_path)
    dest = tmp_path / "dest"
    assert main(["gym", "fetch", "--dest", str(dest), "--mirror", mirror.as_uri(), "--source", "regmix"]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["regmix"]


def test_gym_fetch_refuses_a_corrupt_mirror_file(raw_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    mirror = _mirror(raw_dir, tmp_path)
    (mirror / "regmix" / "test_mixture_1B.csv").write_text("index\n0\n")
    dest = tmp_path / "dest"
    rc = main(["gym", "fetch", "--dest", str(dest), "--mirror", mirror.as_uri(), "--source", "regmix"])
    err = capsys.readouterr().err
    assert rc == 2 and "test_mixture_1B.csv" in err and "refusing it" in err
    assert not (dest / "regmix" / "test_mixture_1B.csv").exists()
    assert not [p for p in (dest / "regmix").iterdir() if p.name.startswith("tmp")]  # no partial download left


def test_gym_fetch_names_a_missing_mirror_file(raw_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    mirror = _mirror(raw_dir, tmp_path)
    (mirror / "steplaw" / "moe_lr_bs_loss.csv").unlink()
    rc = main(["gym", "fetch", "--dest", str(tmp_path / "d"), "--mirror", mirror.as_uri(), "--source", "steplaw"])
    assert rc == 2 and "could not download" in capsys.readouterr().err
