"""Build the testing cluster's binaries from the pinned Go modules (``make cluster-bin``).

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are built from the
modules next to this file (``go.mod`` pins Kubernetes, ``etcd/go.mod`` pins etcd) into

    ${AGLAIS_CACHE:-~/.cache/aglais}/cluster-bin/<key>/

where ``<key>`` hashes both modules' go.mod and go.sum and the build recipe, so a change
of pin builds afresh and an unchanged one does nothing. Go's own caches (GOCACHE,
GOMODCACHE) live under the same root, outside the work tree.

A directory of prebuilt binaries is used instead of building when ``AGLAIS_CLUSTER_BIN``
names one (it must hold all four), or when ``KUBEBUILDER_ASSETS`` (envtest's convention)
names one that holds all four.

Standard library only: ``python -m aglais_hub.testing.controlplane.build`` runs before
anything else is installed. Progress goes to stderr; the last line on stdout is the
directory holding the binaries.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
KUBE_MODULE = HERE
ETCD_MODULE = HERE / "etcd"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
STAMP = "complete"
MIN_GO = (1, 26)
# Upstream's release build (hack/lib/golang.sh): static, no cgo, these tags.
TAGS = "selinux,notest"
# Bump when the way binaries are built changes, so old builds are not reused.
RECIPE = f"1 tags={TAGS} trimpath cgo=0 ldflags=-s,-w,version"
BUILD_COMMAND = "make cluster-bin"


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class Target:
    name: str
    module: Path
    package: str


TARGETS = (
    Target("etcd", ETCD_MODULE, "go.etcd.io/etcd/server/v3"),
    Target("kube-apiserver", KUBE_MODULE, "k8s.io/kubernetes/cmd/kube-apiserver"),
    Target("kube-controller-manager", KUBE_MODULE, "k8s.io/kubernetes/cmd/kube-controller-manager"),
    Target("kube-scheduler", KUBE_MODULE, "k8s.io/kubernetes/cmd/kube-scheduler"),
)


def _required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise BuildError(f"{go_mod} does not require {module}")
    return match.group(1)


def kubernetes_version() -> str:
    """The pinned Kubernetes release, e.g. ``v1.37.2`` (from go.mod)."""
    return _required_version(KUBE_MODULE / "go.mod", "k8s.io/kubernetes")


def etcd_version() -> str:
    """The pinned etcd release, e.g. ``v3.6.16`` (from etcd/go.mod)."""
    return _required_version(ETCD_MODULE / "go.mod", "go.etcd.io/etcd/server/v3")


def cache_root() -> Path:
    return Path(os.environ.get("AGLAIS_CACHE") or Path.home() / ".cache" / "aglais")


def build_key() -> str:
    """Hash of both modules' go.mod and go.sum and of the recipe (16 hex digits)."""
    digest = hashlib.sha256(RECIPE.encode())
    for module in (KUBE_MODULE, ETCD_MODULE):
        for name in ("go.mod", "go.sum"):
            digest.update(f"\0{module.name}/{name}\0".encode())
            digest.update((module / name).read_bytes())
    return digest.hexdigest()[:16]


def cache_bin_dir() -> Path:
    """Where this checkout's pins are built (whether built yet or not)."""
    return cache_root() / "cluster-bin" / build_key()


def _has_all(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in BINARIES)


def override_dir() -> Path | None:
    """A directory of prebuilt binaries named by the environment, if any.

    ``AGLAIS_CLUSTER_BIN`` must hold all four (else BuildError); ``KUBEBUILDER_ASSETS``
    is used only when it does (envtest's usually lacks the controller-manager and
    scheduler, and mixing its apiserver with our build would skew versions).
    """
    ours = os.environ.get("AGLAIS_CLUSTER_BIN")
    if ours:
        directory = Path(ours).expanduser()
        if not _has_all(directory):
            missing = [n for n in BINARIES if not os.access(directory / n, os.X_OK)]
            raise BuildError(f"AGLAIS_CLUSTER_BIN={ours} lacks {', '.join(missing)}")
        return directory
    envtest = os.environ.get("KUBEBUILDER_ASSETS")
    if envtest and _has_all(Path(envtest).expanduser()):
        return Path(envtest).expanduser()
    return None


def find_binaries() -> Path | None:
    """The directory holding all four binaries without building anything, or None."""
    directory = override_dir()
    if directory is not None:
        return directory
    built = cache_bin_dir()
    if (built / STAMP).exists() and _has_all(built):
        return built
    return None


def go_env() -> dict[str, str]:
    """The environment every go command runs in: caches under the cache root, the
    machine's toolchain (unless GOTOOLCHAIN is set), no workspace, go.sum read-only."""
    root = cache_root()
    env = {k: v for k, v in os.environ.items() if k not in ("GOOS", "GOARCH", "GOFLAGS")}
    env.update(
        GOCACHE=str(root / "gocache"),
        GOMODCACHE=str(root / "gomodcache"),
        GOTOOLCHAIN=os.environ.get("GOTOOLCHAIN") or "local",
        GOWORK="off",
        GOFLAGS="-mod=readonly -modcacherw -buildvcs=false",
        CGO_ENABLED="0",
    )
    return env


def check_go(env: dict[str, str]) -> str:
    go = shutil.which("go", path=env.get("PATH"))
    if not go:
        raise BuildError(
            f"Go >= {MIN_GO[0]}.{MIN_GO[1]} is needed to build the testing cluster "
            "(or set AGLAIS_CLUSTER_BIN to a directory holding " + ", ".join(BINARIES) + ")"
        )
    version = subprocess.run(
        [go, "env", "GOVERSION"], env=env, capture_output=True, text=True, check=False
    ).stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", version)
    if env["GOTOOLCHAIN"] == "local" and (not match or tuple(map(int, match.groups())) < MIN_GO):
        raise BuildError(f"Go >= {MIN_GO[0]}.{MIN_GO[1]} is needed; {go} is {version or '?'}")
    return go


def _release_info(go: str, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [go, "list", "-m", "-json", "k8s.io/kubernetes"],
        cwd=KUBE_MODULE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise BuildError(f"go list -m k8s.io/kubernetes failed:\n{out.stderr}")
    return json.loads(out.stdout)


def kube_ldflags(version: str, build_date: str) -> str:
    """The -ldflags upstream's hack/lib/version.sh passes, for the pinned release: the
    binaries' ``--version``, the apiserver's /version and client user agents report it."""
    major, minor = re.match(r"v(\d+)\.(\d+)", version).groups()
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "archive",
        "gitCommit": "",
        "buildDate": build_date,
    }
    flags = ["-s", "-w"]
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        flags += [f"-X '{package}.{key}={value}'" for key, value in values.items()]
    return " ".join(flags)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _run(command: list[str], cwd: Path, env: dict[str, str], label: str, log: TextIO) -> None:
    """Run a go command; a heartbeat every 30 s counts the packages it reports (-v)."""
    started = time.monotonic()
    tail: deque[str] = deque(maxlen=60)
    packages = 0
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        done = threading.Event()

        def heartbeat() -> None:
            while not done.wait(30):
                elapsed = _minutes(time.monotonic() - started)
                print(f"      … {label}: {packages} packages, {elapsed}", file=log, flush=True)

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        for line in process.stdout:
            packages += 1
            tail.append(line.rstrip())
        done.set()
        beat.join()
    if process.returncode:
        raise BuildError(f"{label} failed ({' '.join(command)}):\n" + "\n".join(tail))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build per key at a time (parallel test workers, two terminals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(log: TextIO = sys.stderr, force: bool = False) -> Path:
    """Build whatever of the four is missing from the cache; the directory holding them."""
    out = cache_bin_dir()
    with _locked(out.parent / f"{out.name}.lock"):
        if force:
            (out / STAMP).unlink(missing_ok=True)
        if (out / STAMP).exists() and _has_all(out):
            return out
        env = go_env()
        go = check_go(env)
        out.mkdir(parents=True, exist_ok=True)
        total = time.monotonic()
        kube = kubernetes_version()
        print(f"cluster-bin: Kubernetes {kube}, etcd {etcd_version()} -> {out}", file=log)
        print(
            f"cluster-bin: Go caches in {env['GOCACHE']}, {env['GOMODCACHE']} "
            "(a cold build takes a while)",
            file=log,
            flush=True,
        )
        for module in (ETCD_MODULE, KUBE_MODULE):
            started = time.monotonic()
            print(
                f"  downloading modules for {module.relative_to(HERE.parent.parent.parent)}",
                file=log,
                flush=True,
            )
            _run([go, "mod", "download", "-x"], module, env, "download", log)
            print(f"      done in {_minutes(time.monotonic() - started)}", file=log, flush=True)
        release = _release_info(go, env)
        ldflags = {
            "etcd": "-s -w",
            "kube": kube_ldflags(release["Version"], release.get("Time") or "1970-01-01T00:00:00Z"),
        }
        for index, target in enumerate(TARGETS, 1):
            binary = out / target.name
            if force or not os.access(binary, os.X_OK):
                started = time.monotonic()
                print(f"  [{index}/{len(TARGETS)}] building {target.name}", file=log, flush=True)
                partial = out / f".{target.name}.partial"
                flags = ldflags["etcd" if target.name == "etcd" else "kube"]
                _run(
                    [
                        go,
                        "build",
                        "-v",
                        "-trimpath",
                        f"-tags={TAGS}",
                        f"-ldflags={flags}",
                        "-o",
                        str(partial),
                        target.package,
                    ],
                    target.module,
                    env,
                    target.name,
                    log,
                )
                partial.replace(binary)
                print(
                    f"      {target.name} done in {_minutes(time.monotonic() - started)}",
                    file=log,
                    flush=True,
                )
            else:
                print(f"  [{index}/{len(TARGETS)}] {target.name} already built", file=log)
        (out / STAMP).write_text(f"kubernetes {kube}\netcd {etcd_version()}\n")
        print(f"cluster-bin: built in {_minutes(time.monotonic() - total)}", file=log, flush=True)
        return out


def ensure_binaries(log: TextIO = sys.stderr) -> Path:
    """The directory holding the four binaries: an override, the cache, or a fresh build."""
    return find_binaries() or build(log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m aglais_hub.testing.controlplane.build", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--print-dir",
        action="store_true",
        help="print the directory the binaries are (or would be) in, build "
        "nothing; exit status 1 when they are not there yet",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even when already built")
    args = parser.parse_args(argv)
    try:
        if args.print_dir:
            found = find_binaries()
            print(found or cache_bin_dir())
            return 0 if found else 1
        directory = build(force=True) if args.force else ensure_binaries()
    except BuildError as error:
        print(f"cluster-bin: {error}", file=sys.stderr)
        return 1
    if directory != cache_bin_dir():
        print(f"cluster-bin: using prebuilt binaries in {directory}", file=sys.stderr)
    print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
