"""`aglais-hub demo` survives a restart: notebooks, logins and secrets are kept."""

from __future__ import annotations

import os

import pytest

from aglais_hub import sampledata
from aglais_hub.testing.hubclient import HubClient
from aglais_hub.testing.platform import Platform, demo_values

pytestmark = pytest.mark.e2e

NOTEBOOK = {
    "type": "notebook",
    "content": {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {
                "cell_type": "code",
                "id": "c1",
                "source": "print('kept')",
                "metadata": {},
                "outputs": [],
                "execution_count": None,
            }
        ],
    },
}


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# what a notebook sees of the catalogues: where, and how many Gaia rows in how many files
CATALOGUE_PROBE = """
import os, pyarrow.dataset as ds
where = os.environ["AGLAIS_CATALOGUES"]
print(where)
print(ds.dataset(os.path.join(where, "gaia_source")).count_rows())
"""


def test_restart_keeps_notebooks_and_logins(tmp_path):
    platform = Platform(tmp_path / "demo", demo_values(), own_catalogue=True)
    platform.start()
    catalogue = platform.state_dir / "catalogues"
    try:
        # the demo wrote the default sample into its state directory and alice's
        # notebooks find it through AGLAIS_CATALOGUES
        written = (catalogue / "catalogue.json").stat()
        alice = HubClient(platform.url)
        alice.login("alice", "alice")
        assert alice.start_server().get("ready")
        alice.open_server("user/alice/")
        seen = alice.run_code("user/alice/", CATALOGUE_PROBE).split()
        assert seen == [str(catalogue.resolve()), str(sampledata.DEFAULT_ROWS)]
        saved = alice.session.put(
            alice.url("user/alice/api/contents/kept.ipynb"),
            json=NOTEBOOK,
            headers=alice.xsrf_headers("user/alice/"),
        )
        assert saved.status_code == 201, saved.text
        admin = HubClient(platform.url)
        admin.login("admin", "admin")
        server_pid = admin.get("hub/api/users/alice").json()["servers"][""]["state"]["pid"]
        assert process_alive(server_pid)
    finally:
        platform.stop()
    # Ctrl-C stopped everything: provider, hub, proxy and alice's server
    assert not platform.leftover_ports()
    assert not process_alive(server_pid)
    assert (platform.state_dir / "hub" / "data" / "users" / "alice" / "kept.ipynb").exists()

    seconds = platform.start()
    try:
        assert seconds < 20, f"restart took {seconds:.1f} s"
        # the sample is written once, not at every start
        again_written = (catalogue / "catalogue.json").stat()
        assert (again_written.st_ino, again_written.st_mtime_ns) == (
            written.st_ino,
            written.st_mtime_ns,
        )
        # the browser session from before the restart is still valid (cookie secret kept)
        assert alice.whoami()["name"] == "alice"
        # and a new login works, with the notebook still there
        again = HubClient(platform.url)
        again.login("alice", "alice")
        assert again.start_server().get("ready")
        again.open_server("user/alice/")
        notebook = again.get("user/alice/api/contents/kept.ipynb").json()
        assert notebook["content"]["cells"][0]["source"] == "print('kept')"
    finally:
        platform.stop()
    assert not platform.leftover_ports()
