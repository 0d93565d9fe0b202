"""A Gaia-DR3-like sky and a 2MASS-like overlap, drawn from a seed (pure: arrays in, arrays out).

Not a physical model; enough that the example notebooks find what they look for: a thin
disc and a halo (stars crowd towards the Galactic plane), a main sequence, a giant branch
and a red clump in colour–magnitude, parallax and proper-motion errors that grow with
magnitude as Gaia's do, differential Galactic rotation (Oort's A and B) in the proper
motions, and a tail of poor astrometric solutions (RUWE > 1.4) whose parallaxes are worse,
for a classifier to learn. ``source_id`` carries the HEALPix level-12 nested index in its
top bits, as Gaia's does (``source_id // 2**35``).
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy_healpix import lonlat_to_healpix

HEALPIX_LEVEL = 12
SOURCE_ID_SHIFT = 35  # Gaia: source_id = healpix_12 * 2**35 + a number within the pixel
KM_S_PER_MAS_YR_KPC = 4.740470446
OORT_A, OORT_B = 15.3, -11.9  # km/s/kpc
FAINT_LIMIT, BRIGHT_LIMIT = 20.7, 3.0
RVS_LIMIT = 15.0  # radial velocities only for bright stars, as Gaia's RVS
TWOMASS_LIMIT = 17.0  # G of the faintest star the 2MASS-like survey sees
HALO_FRACTION = 0.15
POOR_FRACTION = 0.08

# main sequence and giant branch: absolute G against BP-RP (piecewise linear)
MAIN_SEQUENCE = ([0.0, 0.5, 0.82, 1.5, 2.5, 3.5, 4.0], [1.0, 3.5, 4.7, 7.3, 10.3, 13.0, 14.5])
GIANT_BRANCH = ([1.0, 1.2, 1.8], [1.5, 0.5, -1.5])


@dataclass(frozen=True)
class Column:
    """One catalogue column: its values and what a reader needs to use them."""

    values: np.ndarray
    unit: str
    description: str
    mask: np.ndarray | None = None  # True where the value is null


Table = dict[str, Column]


def _populations(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Draw n candidate stars: population, position, distance, colour and absolute G."""
    halo = rng.random(n) < HALO_FRACTION
    # disc: exponential scale height 300 pc, distances in the plane growing then falling
    s = rng.gamma(2.0, 800.0, n)
    z = rng.laplace(0.0, 300.0, n)
    disc_d = np.hypot(s, z)
    disc_l = rng.uniform(0.0, 360.0, n)
    disc_b = np.degrees(np.arctan2(z, s))
    # halo: isotropic, 1 to 30 kpc
    halo_d = rng.uniform(1000.0, 30000.0, n)
    halo_l = rng.uniform(0.0, 360.0, n)
    halo_b = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    distance = np.where(halo, halo_d, disc_d)
    l_deg = np.where(halo, halo_l, disc_l)
    b_deg = np.where(halo, halo_b, disc_b)

    kind = rng.random(n)
    giant = kind < np.where(halo, 0.30, 0.08)
    clump = giant & (rng.random(n) < 0.4)
    ms_colour = np.clip(0.35 + rng.gamma(2.0, 0.45, n) - 0.1 * halo, 0.2, 4.0)
    ms_colour = np.where(halo, np.maximum(ms_colour, 0.55), ms_colour)  # old: no blue stars
    giant_colour = rng.uniform(1.0, 1.8, n)
    colour = np.where(giant, np.where(clump, rng.normal(1.2, 0.05, n), giant_colour), ms_colour)
    absolute = np.where(
        giant,
        np.where(clump, rng.normal(0.5, 0.15, n), np.interp(colour, *GIANT_BRANCH)),
        np.interp(colour, *MAIN_SEQUENCE),
    ) + rng.normal(0.0, 0.3, n)
    apparent = absolute + 5.0 * np.log10(distance) - 5.0
    return {
        "halo": halo,
        "distance": distance,
        "l": l_deg,
        "b": b_deg,
        "bp_rp": colour,
        "g": apparent,
    }


def _visible(rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    """Exactly ``rows`` stars between Gaia's bright and faint limits."""
    batches, have = [], 0
    while have < rows:
        drawn = _populations(rng, max(2 * (rows - have), 1000))
        keep = (drawn["g"] > BRIGHT_LIMIT) & (drawn["g"] < FAINT_LIMIT)
        batches.append({k: v[keep] for k, v in drawn.items()})
        have += int(keep.sum())
    return {k: np.concatenate([b[k] for b in batches])[:rows] for k in batches[0]}


def parallax_error(g: np.ndarray) -> np.ndarray:
    """Gaia DR3's parallax uncertainty against G, roughly (mas): 0.02 bright, 0.5 at 20."""
    return 0.02 + 0.5 * 10.0 ** (0.4 * (g - 20.0))


def healpix_index(ra: np.ndarray, dec: np.ndarray, level: int = HEALPIX_LEVEL) -> np.ndarray:
    """The nested HEALPix index at ``level`` of each position (degrees)."""
    return lonlat_to_healpix(ra * u.deg, dec * u.deg, 2**level, order="nested").astype(np.int64)


def gaia_sources(rows: int, seed: int) -> Table:
    """A Gaia-DR3-like ``gaia_source`` table of ``rows`` stars, sorted by source_id."""
    rng = np.random.default_rng([seed, 1])
    star = _visible(rng, rows)
    d_kpc = star["distance"] / 1000.0
    l_rad = np.radians(star["l"])
    b_rad = np.radians(star["b"])
    poor = rng.random(rows) < POOR_FRACTION
    ruwe = np.where(poor, 1.4 + rng.exponential(1.0, rows), rng.lognormal(0.0, 0.07, rows))
    noise = np.where(poor, 3.0, 1.0)  # a poor solution's parallax and motion are worse

    # proper motions: differential rotation for the disc, a hot random part for both
    dispersion = np.where(star["halo"], 150.0, 30.0)  # km/s
    pm_l = np.where(star["halo"], 0.0, (OORT_A * np.cos(2 * l_rad) + OORT_B) * np.cos(b_rad))
    pm_l = pm_l / KM_S_PER_MAS_YR_KPC
    pm_b = np.where(star["halo"], 0.0, -OORT_A * np.sin(2 * l_rad) * np.sin(2 * b_rad) / 2)
    pm_b = pm_b / KM_S_PER_MAS_YR_KPC
    random_pm = dispersion / (KM_S_PER_MAS_YR_KPC * d_kpc)
    pm_l = pm_l + rng.normal(0.0, 1.0, rows) * random_pm
    pm_b = pm_b + rng.normal(0.0, 1.0, rows) * random_pm
    radial_velocity = rng.normal(0.0, 1.0, rows) * dispersion

    sky = SkyCoord(
        l=star["l"] * u.deg,
        b=star["b"] * u.deg,
        distance=star["distance"] * u.pc,
        pm_l_cosb=pm_l * u.mas / u.yr,
        pm_b=pm_b * u.mas / u.yr,
        radial_velocity=radial_velocity * u.km / u.s,
        frame="galactic",
    ).icrs
    ra, dec = sky.ra.deg, sky.dec.deg

    g = star["g"] + rng.normal(0.0, 0.003, rows)
    sigma_plx = parallax_error(g)
    sigma_pm = 1.1 * sigma_plx
    parallax = 1.0 / d_kpc + rng.normal(0.0, 1.0, rows) * sigma_plx * noise
    pmra = sky.pm_ra_cosdec.to_value(u.mas / u.yr) + rng.normal(0.0, 1.0, rows) * sigma_pm * noise
    pmdec = sky.pm_dec.to_value(u.mas / u.yr) + rng.normal(0.0, 1.0, rows) * sigma_pm * noise
    bp_rp = star["bp_rp"] + rng.normal(0.0, 0.01, rows)
    rp = g - (0.1 + 0.45 * bp_rp)
    no_rv = g > RVS_LIMIT

    pixel = healpix_index(ra, dec)
    order = np.lexsort((ra, pixel))
    pixel = pixel[order]
    first_of_pixel = np.searchsorted(pixel, pixel, side="left")
    source_id = (pixel << SOURCE_ID_SHIFT) + (np.arange(rows) - first_of_pixel)

    def col(values: np.ndarray, unit: str, description: str, mask=None) -> Column:  # noqa: ANN001
        return Column(values[order], unit, description, None if mask is None else mask[order])

    return {
        "source_id": Column(source_id, "", "HEALPix level-12 nested index * 2**35 + a number"),
        "ra": col(ra, "deg", "right ascension (ICRS)"),
        "dec": col(dec, "deg", "declination (ICRS)"),
        "l": col(star["l"], "deg", "Galactic longitude"),
        "b": col(star["b"], "deg", "Galactic latitude"),
        "parallax": col(parallax, "mas", "parallax"),
        "parallax_error": col(sigma_plx * noise, "mas", "parallax uncertainty"),
        "pmra": col(pmra, "mas/yr", "proper motion in right ascension * cos(dec)"),
        "pmra_error": col(sigma_pm * noise, "mas/yr", "uncertainty of pmra"),
        "pmdec": col(pmdec, "mas/yr", "proper motion in declination"),
        "pmdec_error": col(sigma_pm * noise, "mas/yr", "uncertainty of pmdec"),
        "ruwe": col(ruwe, "", "renormalised unit weight error (> 1.4: a poor solution)"),
        "phot_g_mean_mag": col(g, "mag", "G-band mean magnitude"),
        "phot_bp_mean_mag": col(rp + bp_rp, "mag", "BP-band mean magnitude"),
        "phot_rp_mean_mag": col(rp, "mag", "RP-band mean magnitude"),
        "bp_rp": col(bp_rp, "mag", "BP - RP colour"),
        "radial_velocity": col(
            radial_velocity, "km/s", "radial velocity (bright stars only)", no_rv
        ),
    }


def twomass_sources(gaia: Table, seed: int) -> Table:
    """A 2MASS-like point-source table over the same sky: most Gaia stars brighter than
    G 17, a few tenths of an arcsecond away, with J, H and K; and a few sources Gaia lacks."""
    rng = np.random.default_rng([seed, 2])
    g = gaia["phot_g_mean_mag"].values
    colour = gaia["bp_rp"].values
    seen = (g < TWOMASS_LIMIT) & (rng.random(g.size) < 0.6)
    n_seen = int(seen.sum())
    n_extra = max(1, n_seen // 30)  # infrared sources without an optical counterpart
    jitter = 0.06 / 3600.0  # degrees
    dec_seen = gaia["dec"].values[seen] + rng.normal(0.0, jitter, n_seen)
    ra_seen = gaia["ra"].values[seen] + rng.normal(0.0, jitter, n_seen) / np.cos(
        np.radians(dec_seen)
    )
    ra = np.concatenate([ra_seen % 360.0, rng.uniform(0.0, 360.0, n_extra)])
    dec = np.concatenate(
        [np.clip(dec_seen, -90.0, 90.0), np.degrees(np.arcsin(rng.uniform(-1, 1, n_extra)))]
    )
    k = np.concatenate(
        [g[seen] - (1.6 * colour[seen] - 0.1), rng.uniform(12.0, 14.5, n_extra)]
    ) + rng.normal(0.0, 0.03, n_seen + n_extra)
    c = np.concatenate([colour[seen], rng.uniform(2.5, 4.0, n_extra)])
    j = k + 0.5 * c - 0.1 + rng.normal(0.0, 0.03, k.size)
    h = k + 0.12 * c + rng.normal(0.0, 0.03, k.size)
    order = np.argsort(ra, kind="stable")
    return {
        "pts_key": Column(np.arange(ra.size, dtype=np.int64), "", "the source's key"),
        "ra": Column(ra[order], "deg", "right ascension (ICRS)"),
        "dec": Column(dec[order], "deg", "declination (ICRS)"),
        "j_m": Column(j[order], "mag", "J magnitude"),
        "h_m": Column(h[order], "mag", "H magnitude"),
        "k_m": Column(k[order], "mag", "Ks magnitude"),
    }
