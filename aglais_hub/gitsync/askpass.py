"""The private directory every git call runs with: its HOME, an empty global config, and
our askpass program.

git runs ``$GIT_ASKPASS "Username for 'https://host': "`` (then ``"Password for ..."``)
when the server asks for credentials; our program answers from the environment
variables ``AGLAIS_GIT_USERNAME`` / ``AGLAIS_GIT_PASSWORD`` that only the git process
we start (and its children) carry. So the token is never in a URL, an argument, a
config file or this script, which holds no secret at all. With no variable set it
fails, and git (GIT_TERMINAL_PROMPT=0) stops with "could not read Username".

It answers only a prompt for the linked repository's host (``AGLAIS_GIT_HOST``, as
``host[:port]``): should the server redirect git elsewhere, the other host asks in vain.

The script is written at run time (mode 0700, in a 0700 directory), so a clean
checkout or an installed wheel needs no executable file shipped; the directory is made
once per process (``directory``), removed at exit, and remade if something (a /tmp
cleaner) removed it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

USERNAME_VAR = "AGLAIS_GIT_USERNAME"
PASSWORD_VAR = "AGLAIS_GIT_PASSWORD"
HOST_VAR = "AGLAIS_GIT_HOST"

# git's prompts: "Username for 'https://host:port': ", "Password for 'https://user@host:port': "
ASKPASS_SCRIPT = f"""#!/bin/sh
# Aglais Hub's askpass for git: $1 is git's prompt. The answer comes from the
# environment of the git process that runs us; this file holds no secret.
[ -n "${{{HOST_VAR}:-}}" ] || exit 1
case "$1" in
  *"//${HOST_VAR}'"*|*"@${HOST_VAR}'"*) ;;
  *) exit 1 ;;
esac
case "$1" in
  Username*) [ -n "${{{USERNAME_VAR}:-}}" ] || exit 1; printf '%s\\n' "${USERNAME_VAR}" ;;
  Password*) [ -n "${{{PASSWORD_VAR}:-}}" ] || exit 1; printf '%s\\n' "${PASSWORD_VAR}" ;;
  *) exit 1 ;;
esac
"""

_lock = threading.Lock()
_directory: Path | None = None


def _make(parent: str | None) -> Path:
    home = Path(tempfile.mkdtemp(prefix="aglais-git-", dir=parent))  # mode 0700
    (home / "config").mkdir(mode=0o700)  # XDG_CONFIG_HOME: git looks for config/git/config
    (home / "gitconfig").write_text("")  # GIT_CONFIG_GLOBAL: empty on purpose
    script = home / "askpass"
    script.write_text(ASKPASS_SCRIPT)
    script.chmod(0o700)
    return home


def directory(parent: str | None = None) -> Path:
    """The process's private git directory (HOME, XDG_CONFIG_HOME, ``gitconfig``,
    ``askpass``), made on first use under ``parent`` (default: the temp dir)."""
    global _directory
    with _lock:
        if _directory is None or not (_directory / "askpass").is_file():
            _directory = _make(parent)
            atexit.register(shutil.rmtree, _directory, True)
        return _directory


def environment(home: Path, host: str, username: str | None, token: str | None) -> dict[str, str]:
    """The askpass half of a git call's environment: where the program is and, when
    there are credentials, what it answers and to which ``host`` (``host[:port]``)."""
    env = {"GIT_ASKPASS": str(home / "askpass")}
    if username is not None and token is not None:
        env.update({HOST_VAR: host, USERNAME_VAR: username, PASSWORD_VAR: token})
    return env
