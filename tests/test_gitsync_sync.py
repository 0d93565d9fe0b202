"""Git sync's decisions: where notebooks go and what an import does to each (pure)."""

from __future__ import annotations

import json

import pytest

from aglais_hub.gitsync.sync import (
    Action,
    beside,
    notebook_bytes,
    plan_import,
    repo_path_of,
    repository_folder,
    server_path,
    without_outputs,
)

URL = "https://git.example.org/alice/gaia-notes.git"


@pytest.mark.parametrize(
    ("url", "folder"),
    [
        (URL, "gaia-notes"),
        ("https://git.example.org/alice/gaia-notes/", "gaia-notes"),
        ("http://127.0.0.1:8000/sky survey.git", "sky survey"),
        ("https://git.example.org/a/Ünïcode:name.git", "Ünïcode-name"),
        ("https://git.example.org/a/%2e%2e", "2e-2e"),  # never a path that climbs
        ("https://git.example.org/a/.git", "repository"),  # nothing usable is left
    ],
)
def test_each_repository_gets_a_folder_named_after_it(url, folder):
    assert repository_folder(url) == folder


def test_paths_map_both_ways_below_the_linked_folder():
    target = server_path("analyses/hr/diagram.ipynb", "analyses", URL)
    assert target == "gaia-notes/hr/diagram.ipynb"
    assert repo_path_of(target, "analyses", URL) == "analyses/hr/diagram.ipynb"
    assert repo_path_of("gaia-notes/top.ipynb", "", URL) == "top.ipynb"
    with pytest.raises(ValueError, match="not in the linked folder"):
        server_path("elsewhere/x.ipynb", "analyses", URL)
    with pytest.raises(ValueError, match="not in the folder 'gaia-notes'"):
        repo_path_of("Examples/01-validation.ipynb", "analyses", URL)


T = "gaia-notes/sky.ipynb"


@pytest.mark.parametrize(
    ("recorded", "current", "blob", "action", "target", "words"),
    [
        # never imported, not in the server: written
        (None, None, "b1", Action.NEW, T, "imported as"),
        # imported once, since deleted in the server: written again
        (("b1", "s1"), None, "b1", Action.NEW, T, "imported as"),
        # a file of the user's own with that name: kept, the repository's beside it
        (None, "s9", "b2aaaaaaaa", Action.KEPT_BOTH, "gaia-notes/sky (git b2aaaaa).ipynb", "kept"),
        # nothing changed anywhere
        (("b1", "s1"), "s1", "b1", Action.UNCHANGED, T, "unchanged"),
        # only the user changed it: kept, and told to commit
        (("b1", "s1"), "s2", "b1", Action.UNCHANGED, T, "commit them to push"),
        # only the repository changed: updated
        (("b1", "s1"), "s1", "b2", Action.UPDATE, T, "updated"),
        # both changed: both kept, each named
        (
            ("b1", "s1"),
            "s2",
            "b2cccccccc",
            Action.KEPT_BOTH,
            "gaia-notes/sky (git b2ccccc).ipynb",
            "your version stays gaia-notes/sky.ipynb",
        ),
    ],
)
def test_an_import_never_overwrites_what_the_user_changed(
    recorded, current, blob, action, target, words
):
    step = plan_import("sky.ipynb", blob, T, recorded, current)
    assert (step.action, step.target) == (action, target)
    assert words in step.words
    assert step.writes is (action is not Action.UNCHANGED)
    if action is Action.KEPT_BOTH:
        assert step.target != T  # the user's file is never the one written


def test_the_repositorys_version_is_named_beside_the_users():
    assert beside("a/b/c.ipynb", "0123456789") == "a/b/c (git 0123456).ipynb"


def test_strip_outputs_clears_code_cells_only_and_leaves_the_original():
    notebook = {
        "cells": [
            {"cell_type": "code", "source": "1", "outputs": [{"x": 1}], "execution_count": 3},
            {"cell_type": "markdown", "source": "# t"},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    stripped = without_outputs(notebook)
    assert stripped["cells"][0]["outputs"] == [] and stripped["cells"][0]["execution_count"] is None
    assert stripped["cells"][1] == notebook["cells"][1]
    assert notebook["cells"][0]["outputs"] == [{"x": 1}]  # a copy: the server's stays


def test_notebooks_are_written_as_jupyter_writes_them():
    data = notebook_bytes({"b": 1, "a": ["é"]})
    assert data == b'{\n "a": [\n  "\xc3\xa9"\n ],\n "b": 1\n}\n'
    assert json.loads(data) == {"a": ["é"], "b": 1}
