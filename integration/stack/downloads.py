"""Fetching what the stack runs: Debian's etcd, and Java jars from Maven Central.

Downloads go to a cache outside the checkout (``$LOGFERRY_CACHE`` or ``~/.cache/logferry``)
so a fresh clone, a second work dir and CI all reuse them. Jars are fetched with Maven
itself (a generated pom and ``dependency:copy-dependencies``) because on these machines the
registries are reachable only through their ordinary clients.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

KAFKA_VERSION = "3.9.2"
SCALA_VERSION = "2.13"

Log = Callable[[str], None]


def cache_dir() -> Path:
    path = Path(os.environ.get("LOGFERRY_CACHE", Path.home() / ".cache" / "logferry"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def ensure_etcd(log: Log) -> str:
    """Return the path of the etcd binary, installing Debian's etcd-server if it is missing."""
    found = shutil.which("etcd")
    if found and shutil.which("etcdctl"):
        return found
    if os.geteuid() != 0:
        raise RuntimeError(
            "etcd is not installed and we are not root: run `sudo apt-get install -y etcd-server etcd-client`"
        )
    log("installing Debian packages etcd-server and etcd-client (apt-get, first time only)…")
    started = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    packages = ["etcd-server", "etcd-client"]
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env)
    log(f"etcd-server installed in {time.monotonic() - started:.0f}s")
    found = shutil.which("etcd")
    if not found:
        raise RuntimeError("apt-get installed etcd-server but no `etcd` binary is on PATH")
    return found


def ensure_java(log: Log) -> str:
    """Return the java binary; install Debian's headless JDK 17 if there is none."""
    found = shutil.which("java")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("java is not installed: run `sudo apt-get install -y openjdk-17-jre-headless`")
    log("installing openjdk-17-jre-headless (apt-get, first time only)…")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "openjdk-17-jre-headless"], check=True, env=env)
    return shutil.which("java") or "java"


def ensure_maven(log: Log) -> str:
    found = shutil.which("mvn")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError("Maven is not installed: run `sudo apt-get install -y maven`")
    log("installing Debian package maven (apt-get, first time only)…")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "maven"], check=True, env=env)
    return shutil.which("mvn") or "mvn"


def maven_fetch(
    target: Path, dependencies: list[tuple[str, str, str]], what: str, log: Log
) -> Path:
    """Copy `dependencies` (group, artifact, version) and everything they need into `target`/lib.

    A marker file written last makes the step idempotent: an interrupted download is redone,
    a complete one is never touched again.
    """
    lib = target / "lib"
    marker = target / ".complete"
    if marker.exists():
        return lib
    mvn = ensure_maven(log)
    log(f"fetching {what} from Maven Central into {target} (first time only)…")
    started = time.monotonic()
    if lib.exists():
        shutil.rmtree(lib)
    target.mkdir(parents=True, exist_ok=True)
    deps = "\n".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in dependencies
    )
    (target / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>logferry.stack</groupId><artifactId>runtime</artifactId><version>1</version>"
        f"<packaging>pom</packaging><dependencies>{deps}</dependencies></project>\n"
    )
    proc = subprocess.run(
        [mvn, "-B", "-q", "-f", str(target / "pom.xml"), "dependency:copy-dependencies",
         f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"Maven could not fetch {what}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    jars = list(lib.glob("*.jar"))
    size = sum(j.stat().st_size for j in jars) / 1e6
    marker.write_text(f"{len(jars)} jars\n")
    log(f"fetched {len(jars)} jars ({size:.0f} MB) in {time.monotonic() - started:.0f}s")
    return lib


def ensure_kafka(log: Log) -> Path:
    """Kafka (which brings ZooKeeper's jar) and a log4j binding; returns the lib dir."""
    return maven_fetch(
        cache_dir() / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}",
        [
            ("org.apache.kafka", f"kafka_{SCALA_VERSION}", KAFKA_VERSION),
            ("org.slf4j", "slf4j-reload4j", "1.7.36"),
        ],
        f"Apache Kafka {KAFKA_VERSION}",
        log,
    )


# --------------------------------------------------------------------------- other versions (issue 19)
KAFKA4_VERSION = "4.1.1"
ETCD36_VERSION = "3.6.16"


def ensure_kafka_version(major: str, log: Log) -> tuple[Path, str]:
    """The lib dir and version of Kafka `major` ("3": the default 3.9.2 with ZooKeeper; "4": KRaft only).

    Kafka 4 logs with log4j2 (its jars bring log4j-core); 3.x with reload4j as before.
    """
    if major in ("3", KAFKA_VERSION):
        return ensure_kafka(log), KAFKA_VERSION
    if major in ("4", KAFKA4_VERSION):
        lib = maven_fetch(
            cache_dir() / f"kafka_{SCALA_VERSION}-{KAFKA4_VERSION}",
            [
                ("org.apache.kafka", f"kafka_{SCALA_VERSION}", KAFKA4_VERSION),
                ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
                ("org.apache.logging.log4j", "log4j-core", "2.24.3"),
            ],
            f"Apache Kafka {KAFKA4_VERSION}",
            log,
        )
        return lib, KAFKA4_VERSION
    raise RuntimeError(f"--kafka {major}: the stack runs Kafka 3 ({KAFKA_VERSION}) or 4 ({KAFKA4_VERSION})")


def find_go() -> str | None:
    return shutil.which("go") or next((p for p in ("/usr/local/go/bin/go", "/usr/lib/go/bin/go")
                                       if Path(p).exists()), None)


ETCD_MAIN_GO = """\
// Built by integration/stack/downloads.py: etcd's own server main, from its Go modules.
package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def ensure_etcd_version(version: str, log: Log) -> str:
    """The etcd binary of `version`: "3.4" is Debian's package, "3.6" is built with Go (cached)."""
    if version in ("3.4", "", "default"):
        return ensure_etcd(log)
    if version not in ("3.6", ETCD36_VERSION):
        raise RuntimeError(f"--etcd {version}: the stack runs etcd 3.4 (Debian's) or 3.6 ({ETCD36_VERSION})")
    target = cache_dir() / f"etcd-{ETCD36_VERSION}"
    binary = target / "etcd"
    if binary.exists() and (target / ".complete").exists():
        return str(binary)
    go = find_go()
    if not go:
        raise RuntimeError(
            f"etcd {ETCD36_VERSION} is built from its Go modules and there is no Go toolchain: "
            "install Go (https://go.dev/dl/) or put `go` on PATH"
        )
    log(f"building etcd {ETCD36_VERSION} with {go} into {target} (first time only, a few minutes)…")
    started = time.monotonic()
    src = target / "src"
    src.mkdir(parents=True, exist_ok=True)
    (src / "main.go").write_text(ETCD_MAIN_GO)
    env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0", GOPATH=str(cache_dir() / "go"),
               GOCACHE=str(cache_dir() / "go" / "build-cache"))
    if not (src / "go.mod").exists():
        subprocess.run([go, "mod", "init", "logferry.local/etcd"], cwd=src, check=True, env=env,
                       capture_output=True)
    steps = [[go, "get", f"go.etcd.io/etcd/server/v3@v{ETCD36_VERSION}"], [go, "mod", "tidy"],
             [go, "build", "-trimpath", "-o", str(binary), "."]]
    for step in steps:
        proc = subprocess.run(step, cwd=src, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building etcd {ETCD36_VERSION}: `{' '.join(step)}` failed:\n"
                               f"{(proc.stdout + proc.stderr)[-3000:]}")
    (target / ".complete").write_text(ETCD36_VERSION + "\n")
    log(f"etcd {ETCD36_VERSION} built in {time.monotonic() - started:.0f}s")
    return str(binary)
