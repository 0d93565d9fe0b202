# JupyterHub configuration for Aglais Hub: everything comes from one values file.
#
#   AGLAIS_VALUES=config/demo.yaml jupyterhub -f config/jupyterhub_config.py
#
# The mapping from values to traitlets lives in aglais_hub.hubconfig, where it is tested.
import os
import sys

from aglais_hub.config import ValuesError, load_values
from aglais_hub.hubconfig import hub_config

values_file = os.environ.get("AGLAIS_VALUES", "values.yaml")
try:
    values = load_values(values_file)
except ValuesError as error:
    sys.exit(f"Aglais Hub cannot start: {error}")

c.merge(hub_config(values, os.environ))  # noqa: F821 (c is provided by JupyterHub)
