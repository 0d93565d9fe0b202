"""Write the sample catalogue to a directory as Parquet, laid out as the real one is.

``DIR/gaia_source/`` holds many files, each a contiguous run of source_id, named as ESA
names DR3's (``GaiaSource_<first>-<last>`` in HEALPix level-8 indices); ``DIR/twomass_psc/``
holds the 2MASS-like table; ``DIR/catalogue.json`` says what was written and from what.
Each column carries its unit and description in the Parquet field metadata. The directory
appears whole or not at all: it is written beside its final place and renamed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .populations import HEALPIX_LEVEL, SOURCE_ID_SHIFT, Table, gaia_sources, twomass_sources

MANIFEST = "catalogue.json"
GENERATOR = "aglais-hub sample-data"
FORMAT_VERSION = 1
FILE_LEVEL = 8  # ESA's DR3 files are named by HEALPix level-8 ranges


class CatalogueError(Exception):
    """The catalogue cannot be written as asked (the message says why)."""


def arrow_table(table: Table) -> pa.Table:
    """The table as Arrow, with each column's unit and description as field metadata."""
    fields, arrays = [], []
    for name, column in table.items():
        array = pa.array(column.values, mask=column.mask)
        meta = {"description": column.description}
        if column.unit:
            meta["unit"] = column.unit
        fields.append(pa.field(name, array.type, nullable=column.mask is not None, metadata=meta))
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def gaia_file_name(first_source_id: int, last_source_id: int) -> str:
    """ESA's DR3 file naming: the level-8 HEALPix range a file's sources fall in."""
    shift = SOURCE_ID_SHIFT + 2 * (HEALPIX_LEVEL - FILE_LEVEL)
    return f"GaiaSource_{first_source_id >> shift:06d}-{last_source_id >> shift:06d}.parquet"


def _write_gaia(table: pa.Table, folder: Path, files: int) -> list[str]:
    folder.mkdir()
    names = []
    for part in np.array_split(np.arange(table.num_rows), files):  # files <= rows: none empty
        chunk = table.slice(int(part[0]), int(part.size))
        ids = chunk.column("source_id")
        name = gaia_file_name(ids[0].as_py(), ids[-1].as_py())
        pq.write_table(chunk, folder / name)
        names.append(name)
    return names


def write_catalogue(directory: Path, rows: int, seed: int, files: int, force: bool) -> dict:
    """Write the sample catalogue into ``directory``; return what catalogue.json says.

    Refuses a directory that holds anything but an earlier sample catalogue, and an
    earlier one unless ``force``; nothing is replaced until the new one is complete.
    """
    if rows < 100:
        raise CatalogueError(f"--rows must be at least 100 (got {rows})")
    if not 1 <= files <= rows:
        raise CatalogueError(f"--files must be between 1 and --rows ({rows}); got {files}")
    directory = directory.resolve()
    if directory.exists():
        if not directory.is_dir():
            raise CatalogueError(f"{directory} exists and is not a directory")
        if any(directory.iterdir()):
            if not (directory / MANIFEST).is_file():
                raise CatalogueError(
                    f"{directory} is not empty and holds no sample catalogue: "
                    "choose an empty or new directory"
                )
            if not force:
                raise CatalogueError(
                    f"{directory} already holds a sample catalogue; --force replaces it"
                )
    directory.parent.mkdir(parents=True, exist_ok=True)

    gaia = gaia_sources(rows, seed)
    twomass = twomass_sources(gaia, seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        gaia_files = _write_gaia(arrow_table(gaia), staging / "gaia_source", files)
        (staging / "twomass_psc").mkdir()
        twomass_table = arrow_table(twomass)
        pq.write_table(twomass_table, staging / "twomass_psc" / "part-00000.parquet")
        manifest = {
            "generator": GENERATOR,
            "format": FORMAT_VERSION,
            "seed": seed,
            "tables": {
                "gaia_source": {"rows": rows, "files": gaia_files},
                "twomass_psc": {"rows": twomass_table.num_rows, "files": ["part-00000.parquet"]},
            },
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            staging.rename(directory)
            shutil.rmtree(old)
        else:
            staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
