"""Load FinanceMath rows through Hugging Face ``datasets``, from the embedded copy or the hub.

Both sources return the same thing: a list of :class:`SourceRow` (split, row index within the
split, the record exactly as ``datasets`` decoded it) plus provenance for the asset metadata.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from finmath_assets.core.checksums import sha256_file

SPLITS: tuple[str, ...] = ("validation", "test")
EMBEDDED_DATA_DIR = Path(str(resources.files("finmath_assets") / "data" / "financemath"))
CHECKSUM_FILE = "SHA256SUMS"

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """The data source cannot be read; the message says which file or dataset and why."""


@dataclass(frozen=True)
class SourceRow:
    split: str
    row_index: int
    record: dict[str, Any]


@dataclass
class LoadedSource:
    rows: list[SourceRow]
    provenance: dict[str, str] = field(default_factory=dict)


def read_checksums(folder: Path) -> dict[str, str]:
    """``sha256sum``-format checksums of a folder, or ``{}`` when it has no SHA256SUMS file."""
    path = folder / CHECKSUM_FILE
    if not path.exists():
        return {}
    checksums: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            checksums[name.lstrip("*")] = digest
    return checksums


def _rows_from_dataset(split: str, dataset: Any) -> list[SourceRow]:
    return [SourceRow(split, index, dict(record)) for index, record in enumerate(dataset.to_list())]


def _is_empty_list(path: Path) -> bool:
    if path.stat().st_size > 64:
        return False
    try:
        return bool(json.loads(path.read_text()) == [])
    except ValueError:
        return False


def load_local(
    folder: Path = EMBEDDED_DATA_DIR,
    cache_dir: Path | None = None,
    splits: tuple[str, ...] = SPLITS,
) -> LoadedSource:
    """Load ``<split>.json`` files from a folder with ``datasets``' JSON builder.

    When the folder has a ``SHA256SUMS`` file (the embedded copy does), every file must match it.
    """
    import datasets

    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"local data folder {folder} does not exist")
    pinned = read_checksums(folder)
    rows: list[SourceRow] = []
    provenance: dict[str, str] = {"source": "local", "location": str(folder)}
    for split in splits:
        path = folder / f"{split}.json"
        if not path.exists():
            raise SourceError(f"local data folder {folder} has no {split}.json")
        digest = sha256_file(path)
        if split + ".json" in pinned and pinned[split + ".json"] != digest:
            raise SourceError(
                f"{path} has SHA-256 {digest}, but {CHECKSUM_FILE} pins "
                f"{pinned[split + '.json']}: the file was changed; restore it or update "
                "the checksum"
            )
        provenance[f"sha256_{split}"] = digest
        if _is_empty_list(path):
            log.warning("%s holds no records", path)
            continue  # datasets refuses a split without rows; an empty split is just empty
        try:
            dataset = datasets.load_dataset(
                "json",
                data_files={split: str(path)},
                split=split,
                cache_dir=str(cache_dir) if cache_dir else None,
            )
        except Exception as exc:  # datasets raises several types for unreadable JSON
            raise SourceError(f"cannot read {path} as JSON records: {exc}") from exc
        rows.extend(_rows_from_dataset(split, dataset))
    return LoadedSource(rows=rows, provenance=provenance)


def load_huggingface(
    name: str,
    token: str | None = None,
    cache_dir: Path | None = None,
    revision: str | None = None,
    splits: tuple[str, ...] = SPLITS,
) -> LoadedSource:
    """Load the (gated) dataset with ``datasets.load_dataset``.

    ``name`` is a hub id such as ``yale-nlp/FinanceMath`` or a local folder laid out like the hub
    repository (``README.md`` plus ``validation.json`` and ``test.json``).
    """
    import datasets

    rows: list[SourceRow] = []
    provenance: dict[str, str] = {"source": "huggingface", "location": name}
    if revision:
        provenance["revision"] = revision
    for split in splits:
        try:
            dataset = datasets.load_dataset(
                name,
                split=split,
                token=token or None,
                cache_dir=str(cache_dir) if cache_dir else None,
                revision=revision,
            )
        except Exception as exc:
            hint = (
                " The dataset is gated: accept its terms on the hub and set FINMATH_HF_TOKEN."
                if not token
                else ""
            )
            raise SourceError(f"cannot load split {split!r} of {name!r}: {exc}.{hint}") from exc
        provenance[f"fingerprint_{split}"] = str(getattr(dataset, "_fingerprint", ""))
        rows.extend(_rows_from_dataset(split, dataset))
    return LoadedSource(rows=rows, provenance=provenance)
