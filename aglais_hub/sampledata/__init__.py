"""The sample catalogue (`aglais-hub sample-data`): a Gaia-DR3-like sky and a 2MASS-like
overlap for the example notebooks, the demo and the tests, where production mounts the
real catalogues. Needs the ``sample-data`` extra (numpy, pyarrow, astropy-healpix)."""
