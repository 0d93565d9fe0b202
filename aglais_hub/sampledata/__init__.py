"""The sample catalogue (`aglais-hub sample-data`): a Gaia-DR3-like sky and a 2MASS-like
overlap for the example notebooks, the demo and the tests, where production mounts the
real catalogues. Needs the ``sample-data`` extra (numpy, pyarrow, astropy-healpix)."""

# The default sample: what the demo writes, the example suite's expected outputs are for,
# and `aglais-hub sample-data` writes unless told otherwise (here: no numpy to import).
DEFAULT_ROWS = 200_000
DEFAULT_SEED = 1
DEFAULT_FILES = 24
NEEDS = ("numpy", "pyarrow", "astropy_healpix")  # the extra's modules
