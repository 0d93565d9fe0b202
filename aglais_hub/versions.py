"""The versions every image, config and test must agree on (one place; a test checks)."""

SPARK_VERSION = "3.5.9"
ZEPPELIN_VERSION = "0.12.0"
JAVA_VERSION = "17"
PYTHON_VERSION = "3.11"
# The science Python stack of the notebook and executor images (the same in both).
SCIENCE_STACK = (
    "numpy==2.2.6",
    "pandas==2.3.3",
    "scipy==1.15.3",
    "matplotlib==3.10.7",
    "astropy==7.1.1",
    "healpy==1.18.1",
    "pyarrow==21.0.0",
    "scikit-learn==1.7.2",
)
