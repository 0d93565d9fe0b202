"""The example notebooks reach every user's Examples/ folder, and a user's change or
deletion survives every later copy (aglais_hub.examples)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aglais_hub.cli import main
from aglais_hub.examples import EXAMPLES_DIR, RECORD, Step, example_files, plan, sync_examples
from aglais_hub.flavours import FLAVOURS, JUPYTERLAB


@pytest.mark.parametrize(
    ("theirs", "last", "step"),
    [
        (None, None, Step.ADD),
        (None, "old", Step.LEFT_DELETED),
        ("new", "old", Step.SAME),
        ("new", None, Step.SAME),
        ("mine", None, Step.KEEP_OWN),
        ("old", "old", Step.UPDATE),
        ("mine", "old", Step.KEEP_CHANGED),
    ],
)
def test_plan_decides_each_file_from_three_checksums(theirs, last, step):
    folder = {} if theirs is None else {"a.ipynb": theirs}
    copied = {} if last is None else {"a.ipynb": last}
    assert plan({"a.ipynb": "new"}, folder, copied) == {"a.ipynb": step}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    directory = tmp_path / "examples"
    directory.mkdir()
    (directory / "01-one.ipynb").write_text("one v1")
    (directory / "02-two.ipynb").write_text("two v1")
    (directory / "01-one.zpln").write_text("a Zeppelin note")
    return directory


def test_a_first_start_copies_the_flavours_examples_only(source, tmp_path):
    folder = tmp_path / "home" / "Examples"
    report = sync_examples(source, folder, ".ipynb")
    assert report.steps == {"01-one.ipynb": Step.ADD, "02-two.ipynb": Step.ADD}
    assert sorted(p.name for p in folder.iterdir()) == [RECORD, "01-one.ipynb", "02-two.ipynb"]
    assert (folder / "02-two.ipynb").read_text() == "two v1"
    assert report.summary().endswith(": 2 added")


def test_a_changed_example_replaces_an_untouched_copy_and_never_a_changed_one(source, tmp_path):
    folder = tmp_path / "Examples"
    sync_examples(source, folder, ".ipynb")
    (folder / "01-one.ipynb").write_text("one, with alice's work")
    (source / "01-one.ipynb").write_text("one v2")
    (source / "02-two.ipynb").write_text("two v2")

    report = sync_examples(source, folder, ".ipynb")
    assert report.steps == {"01-one.ipynb": Step.KEEP_CHANGED, "02-two.ipynb": Step.UPDATE}
    assert (folder / "01-one.ipynb").read_text() == "one, with alice's work"
    assert (folder / "02-two.ipynb").read_text() == "two v2"
    # and the next start leaves both as they are
    again = sync_examples(source, folder, ".ipynb")
    assert again.steps == {"01-one.ipynb": Step.KEEP_CHANGED, "02-two.ipynb": Step.SAME}
    assert not list(folder.glob("*.part")), "no half-written file is left"


def test_a_deleted_example_stays_deleted_and_a_users_own_file_is_kept(source, tmp_path):
    folder = tmp_path / "Examples"
    folder.mkdir()
    (folder / "02-two.ipynb").write_text("bob's own notebook, there before any example")
    sync_examples(source, folder, ".ipynb")
    assert (folder / "02-two.ipynb").read_text().startswith("bob's own")
    (folder / "01-one.ipynb").unlink()

    report = sync_examples(source, folder, ".ipynb")
    assert report.steps == {"01-one.ipynb": Step.LEFT_DELETED, "02-two.ipynb": Step.KEEP_OWN}
    assert not (folder / "01-one.ipynb").exists()


def test_a_lost_record_never_costs_a_change(source, tmp_path):
    folder = tmp_path / "Examples"
    sync_examples(source, folder, ".ipynb")
    (folder / "01-one.ipynb").write_text("changed")
    (folder / RECORD).write_text("not json")
    (source / "01-one.ipynb").write_text("one v2")
    report = sync_examples(source, folder, ".ipynb")
    assert report.steps["01-one.ipynb"] == Step.KEEP_OWN
    assert (folder / "01-one.ipynb").read_text() == "changed"
    assert json.loads((folder / RECORD).read_text())["02-two.ipynb"]


def test_a_flavour_without_examples_gets_an_untouched_folder(source, tmp_path):
    assert sync_examples(source, tmp_path / "Examples", "").steps == {}
    assert not (tmp_path / "Examples").exists()


def test_every_flavour_with_examples_has_some_to_copy():
    with_examples = [f for f in FLAVOURS.values() if f.examples]
    assert JUPYTERLAB in with_examples
    for flavour in with_examples:
        assert example_files(EXAMPLES_DIR, flavour.examples), flavour.name


def test_refresh_copies_into_every_users_folder_of_the_local_spawner(tmp_path, capsys):
    data = tmp_path / "data"
    for name in ("alice", "bob"):
        (data / "users" / name).mkdir(parents=True)
    (data / "users" / "bob" / "Examples").mkdir()
    kept = data / "users" / "bob" / "Examples" / "01-validation.ipynb"
    kept.write_text("bob's own")
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "auth": {"issuer": "https://id.example.org", "clientId": "hub"},
                "tiers": {"basic": {"rank": 0}},
                "spawner": {"localSpark": {"dataDir": str(data), "notebook": "jupyterlab"}},
            }
        )
    )
    assert main(["examples", "refresh", str(values)]) == 0
    out = capsys.readouterr().out
    shipped = sorted(example_files(EXAMPLES_DIR, ".ipynb"))
    assert shipped
    for name in ("alice", "bob"):
        assert str(data / "users" / name / "Examples") in out
        copied = sorted(p.name for p in (data / "users" / name / "Examples").glob("*.ipynb"))
        assert copied == shipped
    assert kept.read_text() == "bob's own"


def test_refresh_says_what_happens_on_kubernetes_and_when_there_is_nobody(tmp_path, capsys):
    values = tmp_path / "values.yaml"
    base = {"auth": {"issuer": "https://id.example.org", "clientId": "hub"}}
    base["tiers"] = {"basic": {"rank": 0}}
    values.write_text(yaml.safe_dump({**base, "spawner": {"kind": "zeppelin"}}))
    assert main(["examples", "refresh", str(values)]) == 0
    assert "each server's pod copies the examples when it starts" in capsys.readouterr().out
    empty = {"localSpark": {"dataDir": str(tmp_path / "none")}}
    values.write_text(yaml.safe_dump({**base, "spawner": empty}))
    assert main(["examples", "refresh", str(values)]) == 1
    assert "no users' folders under" in capsys.readouterr().err
