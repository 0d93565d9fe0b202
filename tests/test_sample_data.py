"""`aglais-hub sample-data`: the Gaia-like catalogue the examples read, as a scientist and
as Spark see it (real pyarrow, real astropy-healpix, real local Spark)."""

from __future__ import annotations

import json
from pathlib import Path

import astropy.units as u
import numpy as np
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from astropy_healpix import healpix_to_lonlat, lonlat_to_healpix

from aglais_hub.cli import main

ROWS = 20_000


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sample") / "catalogue"
    assert main(["sample-data", str(directory), "--rows", str(ROWS), "--seed", "7"]) == 0
    return directory


def columns(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.schema.names}


def test_many_files_named_as_esa_names_dr3s_and_a_manifest(catalogue: Path) -> None:
    files = sorted((catalogue / "gaia_source").glob("GaiaSource_*-*.parquet"))
    assert len(files) == 24
    manifest = json.loads((catalogue / "catalogue.json").read_text())
    assert manifest["seed"] == 7
    assert manifest["tables"]["gaia_source"] == {"rows": ROWS, "files": [f.name for f in files]}
    assert sum(pq.read_metadata(f).num_rows for f in files) == ROWS
    twomass = pq.read_metadata(catalogue / "twomass_psc" / "part-00000.parquet").num_rows
    assert manifest["tables"]["twomass_psc"]["rows"] == twomass
    assert 0 < twomass < ROWS / 2  # the smaller catalogue

    # each file holds a run of source_id inside the level-8 range its name gives
    for f in files:
        first, last = (int(n) for n in f.stem.removeprefix("GaiaSource_").split("-"))
        ids = pq.read_table(f, columns=["source_id"]).column(0).to_numpy()
        assert np.all(np.diff(ids) > 0)
        assert (ids[0] >> 43, ids[-1] >> 43) == (first, last)


def test_columns_carry_the_examples_names_and_units(catalogue: Path) -> None:
    schema = pq.read_schema(next((catalogue / "gaia_source").glob("*.parquet")))
    wanted = [
        "source_id", "ra", "dec", "parallax", "parallax_error", "pmra", "pmdec",
        "phot_g_mean_mag", "bp_rp", "ruwe", "radial_velocity",
    ]  # fmt: skip
    assert set(wanted) <= set(schema.names)
    assert schema.field("parallax").metadata[b"unit"] == b"mas"
    assert schema.field("pmra").metadata[b"unit"] == b"mas/yr"
    twomass = pq.read_schema(catalogue / "twomass_psc" / "part-00000.parquet")
    assert {"ra", "dec", "j_m", "h_m", "k_m"} <= set(twomass.names)


def test_source_id_encodes_the_level_12_healpix_pixel_of_the_position(catalogue: Path) -> None:
    gaia = columns(catalogue / "gaia_source")
    pixel = gaia["source_id"] >> 35
    # what a Gaia user computes from a position finds the star's source_id
    ra, dec = gaia["ra"] * u.deg, gaia["dec"] * u.deg
    assert np.array_equal(lonlat_to_healpix(ra, dec, 2**12, order="nested"), pixel)
    # and the pixel's centre is within a pixel (about an arcminute) of the star
    lon, lat = healpix_to_lonlat(pixel, 2**12, order="nested")
    separation = SkyCoord(lon, lat).separation(SkyCoord(ra, dec)).arcmin
    assert separation.size == ROWS and separation.max() < 1.5
    assert np.unique(pixel).size > ROWS / 2  # the sky, not a few pixels


def test_the_sky_and_the_colour_magnitude_diagram_look_like_gaias(catalogue: Path) -> None:
    gaia = columns(catalogue / "gaia_source")
    # a disc: far more stars near the Galactic plane than an isotropic sky puts there
    assert np.mean(np.abs(gaia["b"]) < 10) > 2 * np.sin(np.radians(10))
    # a halo: stars at high latitude too
    assert np.mean(np.abs(gaia["b"]) > 60) > 0.01
    g = gaia["phot_g_mean_mag"]
    assert 3 < g.min() and g.max() < 21
    # errors grow with magnitude, as Gaia's
    bright, faint = g < 15, g > 19
    assert np.median(gaia["parallax_error"][faint]) > 5 * np.median(gaia["parallax_error"][bright])
    # a main sequence and a giant branch among the good parallaxes
    good = (gaia["parallax"] / gaia["parallax_error"] > 10) & (gaia["ruwe"] < 1.4)
    absolute = g[good] + 5 * np.log10(gaia["parallax"][good] / 100)
    colour = gaia["bp_rp"][good]
    dwarfs = np.sum((absolute > 4) & (colour > 0.7))
    giants = np.sum((absolute < 2) & (colour > 0.9))
    assert dwarfs > 1000 and giants > 200, (dwarfs, giants)
    # a tail of poor solutions whose parallaxes are worse, for the classifier
    poor = gaia["ruwe"] > 1.4
    assert 0.03 < poor.mean() < 0.15
    assert np.median(gaia["parallax_error"][poor]) > 2 * np.median(gaia["parallax_error"][~poor])
    # radial velocities for bright stars only
    rv = pq.read_table(catalogue / "gaia_source", columns=["radial_velocity"]).column(0)
    has_rv = ~np.asarray(rv.is_null())
    assert has_rv.any() and g[has_rv].max() <= 15 and not has_rv[g > 15].any()


def test_most_twomass_sources_have_a_gaia_counterpart_within_an_arcsecond(
    catalogue: Path,
) -> None:
    gaia = columns(catalogue / "gaia_source")
    twomass = columns(catalogue / "twomass_psc")

    def unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
        ra, dec = np.radians(ra), np.radians(dec)
        return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], 1)

    stars, sources = unit(gaia["ra"], gaia["dec"]), unit(twomass["ra"], twomass["dec"])
    nearest = np.concatenate(
        [(chunk @ stars.T).max(axis=1) for chunk in np.array_split(sources, 50)]
    )  # the cosine of each source's distance to its nearest Gaia star
    matched = nearest > np.cos(np.radians(1.0 / 3600))
    assert 0.9 < matched.mean() < 1.0  # and a few infrared sources Gaia lacks


def test_the_same_seed_gives_the_same_catalogue_and_another_seed_another(
    tmp_path: Path, catalogue: Path
) -> None:
    assert main(["sample-data", str(tmp_path / "again"), "--rows", str(ROWS), "--seed", "7"]) == 0
    assert main(["sample-data", str(tmp_path / "other"), "--rows", str(ROWS), "--seed", "8"]) == 0
    first = pq.read_table(catalogue / "gaia_source")
    assert pq.read_table(tmp_path / "again" / "gaia_source").equals(first)
    assert not pq.read_table(tmp_path / "other" / "gaia_source").equals(first)


def test_spark_reads_both_tables_and_cross_matches_them(catalogue: Path) -> None:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "512m")
        .getOrCreate()
    )
    try:
        gaia = spark.read.parquet(str(catalogue / "gaia_source"))
        twomass = spark.read.parquet(str(catalogue / "twomass_psc"))
        assert gaia.count() == ROWS
        assert gaia.inputFiles().__len__() == 24
        gaia.createOrReplaceTempView("gaia")
        twomass.createOrReplaceTempView("twomass")
        # a zone cross-match on 1 arcsecond, as an example notebook would write it
        pairs = spark.sql(
            """
            SELECT COUNT(DISTINCT t.pts_key) AS n FROM twomass t JOIN gaia g
              ON FLOOR(g.dec * 60) BETWEEN FLOOR(t.dec * 60) - 1 AND FLOOR(t.dec * 60) + 1
             AND ABS(g.dec - t.dec) < 1.0 / 3600
             AND ABS(g.ra - t.ra) * COS(RADIANS(t.dec)) < 1.0 / 3600
            """
        ).first()["n"]
        assert 0.9 * twomass.count() < pairs < twomass.count()
    finally:
        spark.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "10"], "--rows must be at least 100 (got 10)"),
        (["--files", "0"], "--files must be between 1 and --rows"),
    ],
)
def test_bad_sizes_are_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    assert main(["sample-data", str(tmp_path / "cat"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cat").exists()


def test_a_directory_of_other_files_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "thesis.tex").write_text("my work")
    assert main(["sample-data", str(tmp_path), "--rows", "200"]) == 2
    assert "is not empty and holds no sample catalogue" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]


def test_an_earlier_catalogue_is_replaced_only_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    target = tmp_path / "cat"
    assert main(["sample-data", str(target), "--rows", "200", "--files", "2"]) == 0
    assert main(["sample-data", str(target), "--rows", "300", "--files", "2"]) == 2
    assert "already holds a sample catalogue; --force replaces it" in capsys.readouterr().err
    assert (
        json.loads((target / "catalogue.json").read_text())["tables"]["gaia_source"]["rows"] == 200
    )
    assert main(["sample-data", str(target), "--rows", "300", "--files", "3", "--force"]) == 0
    manifest = json.loads((target / "catalogue.json").read_text())
    assert manifest["tables"]["gaia_source"]["rows"] == 300
    assert len(list((target / "gaia_source").iterdir())) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat"]  # no staging left behind
