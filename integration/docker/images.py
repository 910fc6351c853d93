"""The container images of the Docker-backed stack: the official ones, or local builds of the same versions.

A CI runner with a registry uses the official images (``docker pull``). Where no registry answers
(this project's machines), the same versions are built here, with nothing downloaded but Debian
packages and the Maven Central jars the native stack already caches:

- ``logferry/java-base:bookworm`` — ``debootstrap --variant=minbase`` of Debian 12 with
  ``openjdk-17-jre-headless``, imported with ``docker import`` (no base image needed);
- ``logferry/etcd:3.4.23`` — Debian's etcd binary (the one the native stack runs) at
  ``/usr/local/bin/etcd``, where the official image has it;
- ``logferry/kafka:3.9.2`` — Kafka's jars (ZooKeeper's included) laid out as the official
  ``apache/kafka`` image lays out its distribution: ``/opt/kafka/{libs,bin,config}``, with
  ``bin/kafka-server-start.sh`` and ``bin/zookeeper-server-start.sh`` taking the same arguments;
- ``logferry/elasticsearch:8.19.21`` — the native stack's Elasticsearch (server jars + launcher),
  configured like the official image: environment variables with a dot in the name are settings
  (``discovery.type=single-node``), ``ES_JAVA_OPTS`` is passed to the JVM; ``xpack.*`` settings
  are ignored with a line in the log (this build has no x-pack: security is off, as in the tests).

The fixture (``integration/docker/stack.py``) runs every image with explicit commands and
settings that mean the same to both, so one code path serves both. Each local image carries a
label with the digest of what went into it, and is rebuilt only when that changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from integration.stack import downloads
from integration.stack import elasticsearch as es_build

Log = Callable[[str], None]

ETCD_VERSION = "3.4.23"
KAFKA_VERSION = downloads.KAFKA_VERSION
ES_VERSION = es_build.ES_VERSION
SUITE = "bookworm"
BASE_PACKAGES = ["openjdk-17-jre-headless", "procps", "iproute2"]
BASE_IMAGE = f"logferry/java-base:{SUITE}"
RECIPE = 1  # bump when a Dockerfile or script below changes meaning
LABEL = "org.logferry.recipe"


@dataclass(frozen=True)
class ImageChoice:
    """One server's image: the name a registry CI uses, and the local build of the same version."""

    role: str
    official: str
    local: str
    setting: str  # environment variable that overrides the name


CHOICES = {
    "etcd": ImageChoice("etcd", f"quay.io/coreos/etcd:v{ETCD_VERSION}", f"logferry/etcd:{ETCD_VERSION}",
                        "LOGFERRY_IMAGE_ETCD"),
    "kafka": ImageChoice("kafka", f"apache/kafka:{KAFKA_VERSION}", f"logferry/kafka:{KAFKA_VERSION}",
                         "LOGFERRY_IMAGE_KAFKA"),
    "elasticsearch": ImageChoice(
        "elasticsearch", f"docker.elastic.co/elasticsearch/elasticsearch:{ES_VERSION}",
        f"logferry/elasticsearch:{ES_VERSION}", "LOGFERRY_IMAGE_ELASTICSEARCH"),
}


class ImageError(RuntimeError):
    """An image could neither be found, pulled nor built; the message says what to do."""


# --------------------------------------------------------------------------- choosing
def resolve_images(client, log: Log) -> dict[str, str]:
    """The image name for each role, building local ones where needed.

    ``LOGFERRY_IMAGE_<ROLE>`` names an image outright. Otherwise ``LOGFERRY_IMAGES`` decides:
    ``official`` pulls the official image (and fails if it cannot), ``local`` builds here,
    ``auto`` (default) uses the official image when present or pullable, else the local build.
    """
    mode = os.environ.get("LOGFERRY_IMAGES", "auto")
    if mode not in ("auto", "official", "local"):
        raise ImageError(f"LOGFERRY_IMAGES={mode!r}: use auto, official or local")
    chosen = {}
    for role, choice in CHOICES.items():
        named = os.environ.get(choice.setting)
        if named:
            chosen[role] = named
            continue
        if mode != "local" and _have_or_pull(client, choice.official, log, must=(mode == "official")):
            chosen[role] = choice.official
            continue
        chosen[role] = ensure_local(client, role, log)
    return chosen


def _have_or_pull(client, name: str, log: Log, must: bool) -> bool:
    import docker.errors

    try:
        client.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        pass
    try:
        log(f"pulling {name}")
        client.images.pull(name)
        return True
    except docker.errors.APIError as e:
        if must:
            raise ImageError(f"cannot pull {name} ({e.explanation or e}); set LOGFERRY_IMAGES=local to build "
                             "the same version here") from e
        log(f"no registry answers for {name} ({str(e.explanation or e)[:120]}); building it locally")
        return False


# --------------------------------------------------------------------------- building
def ensure_local(client, role: str, log: Log) -> str:
    """Build (when missing or stale) and return the local image for `role`."""
    ensure_base(client, log)
    name = CHOICES[role].local
    with tempfile.TemporaryDirectory(prefix=f"logferry-image-{role}-") as tmp:
        ctx = Path(tmp)
        {"etcd": _context_etcd, "kafka": _context_kafka, "elasticsearch": _context_es}[role](ctx, log)
        digest = _digest_dir(ctx)
        if _label(client, name) == digest:
            return name
        log(f"building {name} (docker build, cached afterwards)")
        started = time.monotonic()
        client.images.build(path=str(ctx), tag=name, labels={LABEL: digest}, rm=True, pull=False)
        log(f"built {name} in {time.monotonic() - started:.0f}s")
    return name


def _label(client, name: str) -> str | None:
    import docker.errors

    try:
        return (client.images.get(name).labels or {}).get(LABEL)
    except docker.errors.ImageNotFound:
        return None


def _digest_dir(root: Path) -> str:
    """Names, sizes and modes of every file, plus the contents of the small ones (scripts, Dockerfile)."""
    h = hashlib.sha256(f"recipe {RECIPE}".encode())
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(root)} {st.st_size} {st.st_mode:o}\n".encode())
            if st.st_size < 65536:
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def ensure_base(client, log: Log) -> None:
    """Debian 12 minbase + a headless JRE, made with debootstrap and imported (cached as a tarball)."""
    key = hashlib.sha256(json.dumps([SUITE, BASE_PACKAGES, RECIPE]).encode()).hexdigest()[:10]
    if _label(client, BASE_IMAGE) == key:
        return
    cache = downloads.cache_dir() / "docker"
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"rootfs-{SUITE}-java-{key}.tar"
    if not tarball.exists():
        if shutil.which("debootstrap") is None:
            log("installing debootstrap (apt-get) to build the base image")
            subprocess.run(["apt-get", "install", "-y", "-q", "debootstrap"], check=True,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), capture_output=True)
        from lab.lab import apt_mirror  # the same mirror the lab's image comes from

        mirror = apt_mirror()
        root = cache / f"rootfs-{SUITE}-java-{key}.tmp"
        shutil.rmtree(root, ignore_errors=True)
        log(f"base image: debootstrap {SUITE} + {', '.join(BASE_PACKAGES)} from {mirror} "
            "(2-4 minutes, first time only)")
        started = time.monotonic()
        with open(cache / "debootstrap.log", "w") as out:
            res = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                                  SUITE, str(root), mirror], stdout=out, stderr=subprocess.STDOUT)
        if res.returncode != 0:
            raise ImageError(f"debootstrap of the base image failed; see {cache / 'debootstrap.log'}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk).mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
        shutil.rmtree(root, ignore_errors=True)
        log(f"base rootfs made in {time.monotonic() - started:.0f}s: {tarball}")
    log(f"importing {BASE_IMAGE}")
    with open(tarball, "rb") as f:
        # docker import: a root filesystem becomes an image with no parent (no registry involved).
        res = subprocess.run(
            ["docker", "import", "--change", f"LABEL {LABEL}={key}",
             "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--change", "ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64",
             "-", BASE_IMAGE], stdin=f, capture_output=True, text=True)
    if res.returncode != 0:
        raise ImageError(f"docker import of {BASE_IMAGE} failed: {res.stderr.strip()}")


def _link(src: str, dst: str) -> None:
    """Hard-link a cached jar into a build context (a copy across filesystems).

    The context is laid out at every session start to digest what would go into the image, and
    Kafka's and Elasticsearch's jars are 160 MB: linking makes that free when nothing changed.
    """
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _context_etcd(ctx: Path, log: Log) -> None:
    etcd = downloads.ensure_etcd(log)
    shutil.copy2(etcd, ctx / "etcd")
    ctl = shutil.which("etcdctl")
    if ctl:
        shutil.copy2(ctl, ctx / "etcdctl")
    _write(ctx / "Dockerfile", f"""\
FROM {BASE_IMAGE}
COPY etcd{' etcdctl' if ctl else ''} /usr/local/bin/
EXPOSE 2379 2380
CMD ["etcd"]
""")


KAFKA_START = """\
#!/bin/sh
# What apache/kafka's bin/{script} does, for the jars laid out in /opt/kafka/libs.
exec java ${{KAFKA_HEAP_OPTS:--Xmx{heap} -Xms{heap}}} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \\
  -Djava.awt.headless=true ${{KAFKA_LOG4J_OPTS:--Dlog4j.configuration=file:/opt/kafka/config/log4j.properties}} \\
  ${{KAFKA_OPTS:-}} -cp '/opt/kafka/libs/*' {main} "$@"
"""


def _context_kafka(ctx: Path, log: Log) -> None:
    lib = downloads.ensure_kafka(log)
    shutil.copytree(lib, ctx / "libs", copy_function=_link)
    _write(ctx / "bin/kafka-server-start.sh",
           KAFKA_START.format(script="kafka-server-start.sh", heap="1G", main="kafka.Kafka"), 0o755)
    _write(ctx / "bin/zookeeper-server-start.sh",
           KAFKA_START.format(script="zookeeper-server-start.sh", heap="512M",
                              main="org.apache.zookeeper.server.quorum.QuorumPeerMain"), 0o755)
    _write(ctx / "config/log4j.properties",
           "log4j.rootLogger=INFO, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
           "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
           "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
           "log4j.logger.kafka.request.logger=WARN\nlog4j.logger.org.apache.zookeeper=WARN\n")
    _write(ctx / "config/zookeeper.properties", "dataDir=/tmp/zookeeper\nclientPort=2181\nmaxClientCnxns=0\n"
           "admin.enableServer=false\n")
    _write(ctx / "config/server.properties", "broker.id=0\nlog.dirs=/tmp/kafka-logs\n"
           "zookeeper.connect=localhost:2181\noffsets.topic.replication.factor=1\n")
    _write(ctx / "Dockerfile", f"""\
FROM {BASE_IMAGE}
COPY libs /opt/kafka/libs
COPY bin /opt/kafka/bin
COPY config /opt/kafka/config
WORKDIR /opt/kafka
EXPOSE 9092
CMD ["/opt/kafka/bin/kafka-server-start.sh", "/opt/kafka/config/server.properties"]
""")


ES_ENTRYPOINT = """\
#!/bin/bash
# Configured as the official image is: a variable with a dot in its name is a setting.
set -euo pipefail
home=/usr/share/elasticsearch
settings=()
while IFS= read -r -d '' kv; do
  k=${kv%%=*}
  case "$k" in
    xpack.*) echo "logferry's Elasticsearch build has no x-pack: ignoring $k" >&2 ;;
    *.*) settings+=("$kv") ;;
  esac
done < <(env -0)
mkdir -p "$home/data" "$home/logs" "$home/tmp"
exec java -Xms512m -Xmx512m ${ES_JAVA_OPTS:-} -XX:+UseG1GC -Xss1m -XX:+ExitOnOutOfMemoryError \\
  -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djava.locale.providers=CLDR \\
  -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \\
  -Dlog4j2.disable.jmx=true -Dlog4j.shutdownHookEnabled=false -Djava.io.tmpdir=$home/tmp \\
  --module-path $home/lib --add-modules ALL-MODULE-PATH -cp $home/launcher/{launcher} {main_class} \\
  logferry.config_dir=$home/config path.home=$home path.data=$home/data path.logs=$home/logs \\
  cluster.name=docker-cluster network.host=0.0.0.0 \\
  cluster.routing.allocation.disk.threshold_enabled=false "${settings[@]}" "$@"
"""


def _context_es(ctx: Path, log: Log) -> None:
    runtime = es_build.prepare(downloads.cache_dir(), log)
    home = ctx / "elasticsearch"
    for sub in ("lib", "modules", "config", "plugins", "launcher"):
        src = runtime.es_home / sub
        if src.exists():
            shutil.copytree(src, home / sub, copy_function=_link)
    _write(ctx / "docker-entrypoint.sh",
           ES_ENTRYPOINT.replace("{launcher}", es_build.LAUNCHER_JAR).replace("{main_class}",
                                                                             es_build.LAUNCHER_CLASS), 0o755)
    _write(ctx / "Dockerfile", f"""\
FROM {BASE_IMAGE}
COPY elasticsearch /usr/share/elasticsearch
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /usr/share/elasticsearch
EXPOSE 9200 9300
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
""")

