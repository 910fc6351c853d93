"""A real OpenSearch 2 node per process, built from Maven Central jars (like elasticsearch.py).

The minimal runnable set, found by starting nodes (docs/compatibility.md): the server jar
``org.opensearch:opensearch`` and its dependencies, ``opensearch-plugin-classloader`` (it loads
the modules) and log4j-core on the class path (OpenSearch 2 is not a set of Java modules), and
one module, ``transport-netty4``
(``org.opensearch.plugin:transport-netty4-client``: the HTTP and transport layers; without a
transport the node does not start). The module's jar carries no plugin descriptor, so we write
it. ``GET /``, composable index templates, bulk, search, count, ``_cluster/health`` and
``_tasks`` are all in the server. Not there: analysis-common (extra analyzers), painless,
reindex, ingest-common, and the security plugin (HTTP without authentication, as our ES).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from . import downloads
from .elasticsearch import LOG4J2_PROPERTIES, EsRuntime, _find_jdk

OPENSEARCH_VERSION = "2.19.6"
LOG4J_VERSION = "2.25.4"  # the log4j-api version the server depends on: core must match it

HERE = Path(__file__).resolve().parent / "opensearch"
LAUNCHER_SRC = HERE / "LogferryOpenSearchNode.java"
LAUNCHER_CLASS = "LogferryOpenSearchNode"

NETTY4_DESCRIPTOR = """\
description=Netty 4 based transport and HTTP (laid out by integration/stack/opensearch.py)
version={version}
name=transport-netty4
classname=org.opensearch.transport.Netty4Plugin
java.version=11
opensearch.version={version}
"""

Log = Callable[[str], None]


class OpenSearchRuntime(EsRuntime):
    """Same settings and JVM flags as an ES node; the server on the class path instead of the module path."""

    @property
    def classpath(self) -> str:
        return f"{self.es_home / 'lib'}/*:{self.launcher_jar}"

    def node_command(self, *args, **kwargs) -> list[str]:
        argv = super().node_command(*args, **kwargs)
        i = argv.index("--module-path")
        j = argv.index("-cp")
        # drop --module-path LIB --add-modules ALL-MODULE-PATH; swap the launcher class
        argv = argv[:i] + argv[j:]
        argv[argv.index("LogferryEsNode")] = LAUNCHER_CLASS
        return argv


def prepare(cache_dir: Path, log: Log, version: str = OPENSEARCH_VERSION) -> OpenSearchRuntime:
    """Fetch (first time only) and compile (when the launcher changed) what OpenSearch nodes need."""
    base = Path(cache_dir) / f"opensearch-{version}"
    home = base / "home"
    java, javac = _find_jdk(log, 17)
    if not (home / ".fetched").exists():
        server = downloads.maven_fetch(
            base / "server",
            [("org.opensearch", "opensearch", version), ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
             ("org.opensearch", "opensearch-plugin-classloader", version)],
            f"OpenSearch {version} server", log,
        )
        netty = downloads.maven_fetch(
            base / "netty4", [("org.opensearch.plugin", "transport-netty4-client", version)],
            f"OpenSearch {version} transport-netty4", log,
        )
        shutil.rmtree(home, ignore_errors=True)
        (home / "lib").mkdir(parents=True)
        for jar in server.glob("*.jar"):
            shutil.copy(jar, home / "lib" / jar.name)
        in_lib = {j.name for j in (home / "lib").glob("*.jar")}
        mod = home / "modules" / "transport-netty4"
        mod.mkdir(parents=True)
        for jar in netty.glob("*.jar"):
            if jar.name not in in_lib:
                shutil.copy(jar, mod / jar.name)
        (mod / "plugin-descriptor.properties").write_text(NETTY4_DESCRIPTOR.format(version=version))
        (home / "plugins").mkdir()
        (home / "config").mkdir()
        (home / "config" / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        (home / ".fetched").write_text("ok\n")
    launcher = _compile(home, javac, log, version)
    return OpenSearchRuntime(java=java, es_home=home, launcher_jar=launcher)


def _compile(home: Path, javac: str, log: Log, version: str) -> Path:
    out = home / "launcher"
    jar = out / "logferry-opensearch-launcher.jar"
    stamp = out / ".stamp"
    want = hashlib.sha256(LAUNCHER_SRC.read_bytes() + f"{version} {javac}".encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == want and jar.exists():
        return jar
    log("compiling the OpenSearch launcher…")
    started = time.monotonic()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="os-javac-", dir=home) as tmp:
        proc = subprocess.run(
            [javac, "-nowarn", "--release", "17", "-cp", f"{home / 'lib'}/*", "-d", tmp, str(LAUNCHER_SRC)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"javac failed on {LAUNCHER_SRC.name}:\n{proc.stdout}{proc.stderr}")
        with zipfile.ZipFile(jar, "w") as zf:
            for cls in sorted(Path(tmp).rglob("*.class")):
                zf.write(cls, cls.relative_to(tmp).as_posix())
    stamp.write_text(want)
    log(f"compiled in {time.monotonic() - started:.0f}s")
    return jar
