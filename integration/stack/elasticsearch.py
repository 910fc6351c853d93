"""A real Elasticsearch 8 node per process, built from Maven Central jars (no Docker, no tarball).

The official distribution is not on Maven Central, but the server jar and the transport-netty4
module (HTTP + transport) are. `prepare` fetches them with Maven (``es/pom.xml``) and lays them out
as the distribution does: ``lib/`` is the module path, ``modules/transport-netty4/`` is loaded by
the node's own plugin loader in its own module layer. A small launcher (``es/LogferryEsNode.java``)
replaces ``bin/elasticsearch``: it builds the settings and starts a ``Node``; SIGTERM closes it.
``es/LogferryRestRoot.java`` stands in for the unpublished rest-root module (``GET /``, ``HEAD /``),
without which the Python client's ``info()`` and ``ping()`` fail.

Not there, because those modules are not published (checked against a running node):
mapper-extras (``match_only_text``, ``scaled_float``, ...), x-pack field types (``wildcard``,
``constant_keyword``), the aggregations module (``bucket_sort`` and other pipeline aggs,
``auto_date_histogram``; ``terms``, ``date_histogram``, ``percentiles``, ``cardinality`` are core),
painless (scripts, runtime fields), reindex (``_reindex``, ``_delete_by_query``,
``_update_by_query``), ingest-common processors, data streams, x-pack (security, ILM, licence,
ES|QL). Real and working: indices, mappings with date/text/ip/long/keyword/flattened/nested/
geo_point, composable index templates, bulk, search, count, mget, core aggs, ``_cat``,
``_cluster``, ``_nodes``, ``_health_report``, ``lowercase`` normalizers, ``whitespace`` analyzer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import downloads
from .procs import free_ports

ES_VERSION = "8.19.21"
# Other versions the stack can run (`up --search es9|opensearch`, docs/compatibility.md).
ES9_VERSION = "9.2.2"  # the newest 9.2 whose transport-netty4 module is on Maven Central (9.2.4 has none)
OPENSEARCH_VERSION = "2.19.6"

Log = Callable[[str], None]

HERE = Path(__file__).resolve().parent / "es"
POM = HERE / "pom.xml"
LAUNCHER_SRC = HERE / "LogferryEsNode.java"
REST_ROOT_SRC = HERE / "LogferryRestRoot.java"
LAUNCHER_CLASS = "LogferryEsNode"
LAUNCHER_JAR = "logferry-es-launcher.jar"  # a jar, not a folder: class-data sharing needs that

# Modules fetched from Maven Central: profile id in es/pom.xml == module name == the folder
# name under META-INF/es-plugins/ in the module's jar (where its descriptor lives).
MAVEN_MODULES = ["transport-netty4"]

# Enough log4j for a readable log: INFO and up to stdout, which the caller sends to a file.
LOG4J2_PROPERTIES = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
"""

REST_ROOT_DESCRIPTOR = """\
description=GET / and HEAD / (stands in for the distribution's rest-root module)
version={version}
name=logferry-rest-root
classname=org.logferry.es.LogferryRestRoot
java.version=17
elasticsearch.version={version}
"""


def min_java(version: str) -> int:
    """The oldest Java a server version runs on: ES 9 needs 21, ES 8 and OpenSearch 2 take 17."""
    return 21 if int(version.split(".")[0]) >= 9 else 17


@dataclass
class EsRuntime:
    """What it takes to start nodes: a JDK and the laid-out Elasticsearch home (shared, read-only)."""

    java: str
    es_home: Path
    launcher_jar: Path
    cds_archive: Path | None = None  # the JVM's class-data archive of a started node, if made

    @property
    def classpath(self) -> str:
        """Only the launcher is on the class path; Elasticsearch itself is on the module path."""
        return str(self.launcher_jar)

    @property
    def module_path(self) -> str:
        return str(self.es_home / "lib")

    def node_command(
        self,
        node_name: str,
        home_dir: Path,
        http_port: int,
        transport_port: int,
        seed_transport_ports: list[int],
        initial_master_nodes: list[str],
        heap_mb: int = 512,
        cluster_name: str = "logferry",
        extra_settings: dict[str, str] | None = None,
        jvm_options: list[str] | None = None,
    ) -> list[str]:
        """The argv of one node, its data, logs and tmp under `home_dir` (created here).

        With no seeds (or only its own port) the node runs with ``discovery.type=single-node``,
        otherwise it joins the others and the first start bootstraps from
        `initial_master_nodes` (ignored once the cluster has formed, as in production).
        """
        home_dir = Path(home_dir).resolve()
        for sub in ("data", "logs", "tmp"):
            (home_dir / sub).mkdir(parents=True, exist_ok=True)
        settings = {
            "cluster.name": cluster_name,
            "node.name": node_name,
            "path.home": str(self.es_home),
            "path.data": str(home_dir / "data"),
            "path.logs": str(home_dir / "logs"),
            "network.host": "127.0.0.1",
            "http.port": str(http_port),
            "transport.port": str(transport_port),
            # Test machines' disks are often fuller than the 85/90/95 % watermarks; a shard that
            # is not allocated because of a CI runner's disk would look like our bug.
            "cluster.routing.allocation.disk.threshold_enabled": "false",
        }
        others = [p for p in seed_transport_ports if p != transport_port]
        if others:
            settings["discovery.seed_hosts"] = ",".join(f"127.0.0.1:{p}" for p in seed_transport_ports)
            settings["cluster.initial_master_nodes"] = ",".join(initial_master_nodes)
        else:
            settings["discovery.type"] = "single-node"
        settings.update(extra_settings or {})
        jvm = [
            f"-Xms{heap_mb}m",
            f"-Xmx{heap_mb}m",
            # What the distribution's launcher sets (SystemJvmOptions / jvm.options), minus
            # heap dumps: G1, UTF-8, netty without Unsafe tricks, no log4j JMX or shutdown hook
            # (our own hook closes the node and still wants to log).
            "-XX:+UseG1GC",
            "-Xss1m",
            "-XX:-OmitStackTraceInFastThrow",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            "-Dfile.encoding=UTF-8",
            "-Djava.locale.providers=CLDR",
            "-Dio.netty.noUnsafe=true",
            "-Dio.netty.noKeySetOptimization=true",
            "-Dio.netty.recycler.maxCapacityPerThread=0",
            "-Dlog4j2.disable.jmx=true",
            "-Dlog4j.shutdownHookEnabled=false",
            f"-Djava.io.tmpdir={home_dir / 'tmp'}",
        ]
        if self.cds_archive is not None:
            # Classes parsed and verified once, mapped by every node: about 2 s less CPU per
            # start and ~80 MB less RSS each. A stale archive is ignored by the JVM (a warning).
            jvm.append(f"-XX:SharedArchiveFile={self.cds_archive}")
        jvm += jvm_options or []
        return [
            self.java,
            *jvm,
            "--module-path",
            self.module_path,
            "--add-modules",
            "ALL-MODULE-PATH",
            "-cp",
            self.classpath,
            LAUNCHER_CLASS,
            f"logferry.config_dir={self.es_home / 'config'}",
            *(f"{k}={v}" for k, v in settings.items()),
        ]


# --------------------------------------------------------------------------- preparing


def prepare(cache_dir: Path, log: Log, version: str = ES_VERSION) -> EsRuntime:
    """Fetch (first time only) and compile (when the sources changed) what nodes need.

    Everything lands in ``cache_dir/elasticsearch-<version>``; a marker written last makes an
    interrupted fetch start over instead of leaving half a set of jars.
    """
    es_home = Path(cache_dir) / f"elasticsearch-{version}"
    java, javac = _find_jdk(log, min_java(version))
    _fetch(es_home, log, version)
    launcher_jar = _compile(es_home, javac, log, version)
    runtime = EsRuntime(java=java, es_home=es_home, launcher_jar=launcher_jar)
    runtime.cds_archive = _class_data_archive(runtime, log)
    return runtime


def java_feature(java_home: Path) -> int:
    """The feature release (17, 21, 25) of a JDK home, from its `release` file; 0 if unknown."""
    try:
        for line in (java_home / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                v = line.split("=", 1)[1].strip('"')
                return int(v.split(".")[0]) if not v.startswith("1.") else int(v.split(".")[1])
    except (OSError, ValueError):
        pass
    return 0


def find_jdk_at_least(minimum: int) -> Path | None:
    """A JDK home (with javac) of release >= `minimum`: $LOGFERRY_ES_JAVA_HOME, $JAVA_HOME,
    then /usr/lib/jvm/* (newest first)."""
    candidates = [os.environ.get(v) for v in ("LOGFERRY_ES_JAVA_HOME", "JAVA_HOME")]
    candidates += sorted((str(p) for p in Path("/usr/lib/jvm").glob("*") if p.is_dir() and not p.is_symlink()),
                         key=lambda h: -java_feature(Path(h)))
    for home in candidates:
        if home and (Path(home) / "bin" / "javac").exists() and java_feature(Path(home)) >= minimum:
            return Path(home)
    return None


def _find_jdk(log: Log, minimum: int = 17) -> tuple[str, str]:
    """java and javac of one JDK ≥ `minimum`: $LOGFERRY_ES_JAVA_HOME, $JAVA_HOME, or the one on PATH.

    ES 8.19's jars target Java 17, so Debian 12's default JDK runs it. Debian's JRE package has
    no javac: install the JDK package when we are root. ES 9 needs Java 21: we look for one in
    /usr/lib/jvm and say what is missing when there is none.
    """
    if minimum > 17:
        home = find_jdk_at_least(minimum)
        if home is None:
            raise RuntimeError(
                f"this server version needs a JDK {minimum} or newer and none was found (looked at "
                "$LOGFERRY_ES_JAVA_HOME, $JAVA_HOME and /usr/lib/jvm/*): install one, e.g. "
                f"`apt-get install openjdk-{minimum}-jdk-headless` or Temurin {minimum}+, or set LOGFERRY_ES_JAVA_HOME"
            )
        return str(home / "bin" / "java"), str(home / "bin" / "javac")
    for var in ("LOGFERRY_ES_JAVA_HOME", "JAVA_HOME"):
        home = os.environ.get(var)
        if home and (Path(home) / "bin" / "javac").exists():
            return str(Path(home) / "bin" / "java"), str(Path(home) / "bin" / "javac")
    java = downloads.ensure_java(log)
    javac = Path(java).resolve().parent / "javac"
    if not javac.exists():
        found = shutil.which("javac")
        if found:
            javac = Path(found)
        elif os.geteuid() == 0:
            log("installing openjdk-17-jdk-headless for javac (apt-get, first time only)…")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "openjdk-17-jdk-headless"], check=True, env=env
            )
            javac = Path(java).resolve().parent / "javac"
        else:
            raise RuntimeError("no javac: run `sudo apt-get install -y openjdk-17-jdk-headless`")
    return java, str(javac)


def _fetch(es_home: Path, log: Log, version: str = ES_VERSION) -> None:
    """lib/, modules/<name>/ for each Maven module, config/log4j2.properties, plugins/ (empty)."""
    marker = es_home / ".fetched"
    if marker.exists():
        return
    mvn = downloads.ensure_maven(log)
    log(f"fetching Elasticsearch {version} jars from Maven Central (first time only)…")
    started = time.monotonic()
    for sub in ("lib", "modules", "plugins", "config"):
        shutil.rmtree(es_home / sub, ignore_errors=True)
    es_home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="es-mvn-", dir=es_home) as tmp:
        work = Path(tmp)
        shutil.copy(POM, work / "pom.xml")  # so Maven writes nothing into the checkout

        def copy_deps(profile: str, out: Path) -> None:
            proc = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(work / "pom.xml"),
                    "-P",
                    profile,
                    f"-Des.version={version}",
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={out}",
                    "-DincludeScope=runtime",
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"Maven could not fetch Elasticsearch ({profile}):\n{(proc.stdout + proc.stderr)[-3000:]}"
                )

        lib = es_home / "lib"
        copy_deps("server", lib)
        in_lib = {j.name for j in lib.glob("*.jar")}
        for name in MAVEN_MODULES:
            raw = work / name
            copy_deps(name, raw)
            mod = es_home / "modules" / name
            mod.mkdir(parents=True)
            # Like the distribution: the module's folder holds only what the server lacks.
            for jar in raw.glob("*.jar"):
                if jar.name not in in_lib:
                    shutil.copy(jar, mod / jar.name)
            _extract_descriptor(mod / f"{name}-{version}.jar", name, mod)
    (es_home / "plugins").mkdir()
    (es_home / "config").mkdir()
    (es_home / "config" / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
    jars = list(es_home.glob("lib/*.jar")) + list(es_home.glob("modules/*/*.jar"))
    size = sum(j.stat().st_size for j in jars) / 1e6
    marker.write_text(f"{len(jars)} jars\n")
    log(f"fetched {len(jars)} jars ({size:.0f} MB) in {time.monotonic() - started:.0f}s")


def _extract_descriptor(jar: Path, name: str, into: Path) -> None:
    """A published module jar carries its plugin-descriptor.properties (and entitlement policy)."""
    with zipfile.ZipFile(jar) as zf:
        for leaf in ("plugin-descriptor.properties", "entitlement-policy.yaml"):
            member = f"META-INF/es-plugins/{name}/{leaf}"
            if member in zf.namelist():
                (into / leaf).write_bytes(zf.read(member))
    if not (into / "plugin-descriptor.properties").exists():
        raise RuntimeError(f"{jar.name} has no META-INF/es-plugins/{name}/plugin-descriptor.properties")


def _compile(es_home: Path, javac: str, log: Log, version: str = ES_VERSION) -> Path:
    """Compile the launcher (a jar on the class path) and the rest-root stand-in (a module jar).

    Only when the sources, the ES version or the JDK changed; returns the launcher jar.
    """
    launcher_dir = es_home / "launcher"
    launcher_jar = launcher_dir / LAUNCHER_JAR
    stamp = launcher_dir / ".stamp"
    digest = hashlib.sha256()
    for src in (LAUNCHER_SRC, REST_ROOT_SRC):
        digest.update(src.read_bytes())
    digest.update(f"{version} {javac}".encode())
    want = digest.hexdigest()
    rest_root = es_home / "modules" / "logferry-rest-root"
    if stamp.exists() and stamp.read_text() == want and (rest_root / "logferry-rest-root.jar").exists():
        return launcher_jar
    log("compiling the Elasticsearch launcher…")
    shutil.rmtree(launcher_dir, ignore_errors=True)
    shutil.rmtree(rest_root, ignore_errors=True)
    launcher_dir.mkdir(parents=True)
    rest_root.mkdir(parents=True)
    common = [
        javac,
        "-nowarn",
        "--release",
        str(min_java(version)),
        "--module-path",
        str(es_home / "lib"),
        "--add-modules",
        "ALL-MODULE-PATH",
    ]
    with tempfile.TemporaryDirectory(prefix="es-javac-", dir=es_home) as tmp:
        for src, jar in ((LAUNCHER_SRC, launcher_jar), (REST_ROOT_SRC, rest_root / "logferry-rest-root.jar")):
            classes = Path(tmp) / src.stem
            proc = subprocess.run([*common, "-d", str(classes), str(src)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"javac failed on {src.name}:\n{proc.stdout}{proc.stderr}")
            with zipfile.ZipFile(jar, "w") as zf:
                for cls in sorted(classes.rglob("*.class")):
                    zf.write(cls, cls.relative_to(classes).as_posix())
    (rest_root / "plugin-descriptor.properties").write_text(REST_ROOT_DESCRIPTOR.format(version=version))
    stamp.write_text(want)
    return launcher_jar


def _class_data_archive(runtime: EsRuntime, log: Log) -> Path | None:
    """A JVM class-data archive (CDS) made by starting one node once; None if that failed.

    Starting a node is mostly loading and verifying ~20,000 classes; with the archive that work
    is done once (3 nodes on 2 cores: ~15 s -> ~7 s to green). Keyed by JDK and launcher, so a
    different JDK or a recompiled launcher gets its own archive.
    """
    java_home = Path(runtime.java).resolve().parent.parent
    release = java_home / "release"
    key = hashlib.sha256(
        f"{java_home}\n{release.read_text() if release.exists() else ''}\n"
        f"{(runtime.launcher_jar.parent / '.stamp').read_text()}".encode()
    ).hexdigest()[:16]
    cds_dir = runtime.es_home / "cds"
    archive = cds_dir / f"{key}.jsa"
    if archive.exists():
        return archive
    log("recording a class-data archive for faster Elasticsearch starts (first time only)…")
    started = time.monotonic()
    shutil.rmtree(cds_dir, ignore_errors=True)  # archives of other JDKs/launchers are stale
    cds_dir.mkdir(parents=True)
    partial = cds_dir / f"{key}.jsa.partial"
    http_port, transport_port = free_ports(2)
    node_dir = cds_dir / "node"
    argv = runtime.node_command(
        "cds",
        node_dir,
        http_port,
        transport_port,
        [],
        [],
        jvm_options=[f"-XX:ArchiveClassesAtExit={partial}"],
    )
    with open(cds_dir / "node.log", "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{http_port}/_cluster/health"
                with urllib.request.urlopen(url, timeout=2) as r:
                    if json.loads(r.read()).get("status") in ("yellow", "green"):
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # the archive is written as the JVM exits
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    shutil.rmtree(node_dir, ignore_errors=True)
    if not partial.exists() or partial.stat().st_size == 0:
        log(f"no class-data archive (nodes start without it); see {cds_dir / 'node.log'}")
        return None
    partial.rename(archive)
    log(f"class-data archive recorded in {time.monotonic() - started:.0f}s")
    return archive
