"""Deterministic, realistic nginx ``combined`` access-log lines (about 200 bytes each).

``$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer"
"$http_user_agent"`` with a skewed mix of paths, statuses, referers and user agents, so the
lines compress like real ones (lz4 on the Kafka side) rather than like random bytes or
repeated text. The same (seed, count) always gives the same bytes.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

_METHODS = ["GET"] * 14 + ["POST"] * 4 + ["PUT", "DELETE", "HEAD"]
_PATHS = [
    "/", "/index.html", "/favicon.ico", "/robots.txt", "/static/css/main.{h}.css", "/static/js/app.{h}.js",
    "/static/img/logo.svg", "/api/v1/products/{n}", "/api/v1/products?page={p}&sort=price",
    "/api/v1/cart/{n}/items", "/api/v1/users/{n}/orders?limit=20", "/api/v2/search?q={w}&page={p}",
    "/catalog/{w}/{w}-{n}", "/blog/{y}/{m}/{w}-{w}", "/checkout/confirm?order={n}", "/login",
    "/healthz", "/metrics", "/images/products/{n}/large.jpg", "/wp-login.php",
]
_WORDS = ["shoes", "shirts", "lamp", "sofa", "kitchen", "garden", "books", "coffee", "bike", "tent",
          "phone", "laptop", "headphones", "watch", "camera", "desk", "chair", "rug", "mug", "socks"]
_STATUSES = [200] * 80 + [304] * 6 + [301, 302] * 2 + [404] * 4 + [400, 401, 403, 500, 502, 503]
_REFERERS = ["-"] * 6 + ["https://www.example.com/", "https://www.example.com/catalog/{w}",
                         "https://www.google.com/", "https://duckduckgo.com/", "https://shop.example.com/cart"]
_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "curl/8.4.0",
    "Go-http-client/1.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "python-requests/2.31.0",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 "
    "Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
    "Safari/537.36 Edg/120.0.2210.61",
]
_NETS = (10, 172, 192, 198, 203, 81, 94, 5, 37, 185)
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
#: 2024-11-01 00:00:00 UTC: the generated lines' clock starts here and advances ~1 ms a line
EPOCH0 = 1730419200


def _fill(rng: random.Random, template: str) -> str:
    if "{" not in template:
        return template
    return template.format(
        h=f"{rng.getrandbits(32):08x}", n=rng.randrange(1, 99999), p=rng.randrange(1, 40),
        w=rng.choice(_WORDS), y=rng.choice((2022, 2023, 2024)), m=f"{rng.randrange(1, 13):02d}",
    )


def _time_local(t: int) -> str:
    tm = time.gmtime(t)
    return (f"{tm.tm_mday:02d}/{_MONTHS[tm.tm_mon - 1]}/{tm.tm_year}:"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000")


def _block(seed: int, block: int) -> list[str]:
    """The ``block``-th run of 1,000 lines of the seed's stream."""
    rng = random.Random(seed * 1_000_003 + block)
    rand, choice, randrange = rng.random, rng.choice, rng.randrange
    t0 = EPOCH0 + block  # one second of traffic per block: 1,000 requests/s
    stamp = _time_local(t0)
    out = []
    for _ in range(1000):
        ip = f"{choice(_NETS)}.{randrange(256)}.{randrange(256)}.{randrange(1, 255)}"
        status = choice(_STATUSES)
        size = 0 if status == 304 else randrange(120, 60000)
        user = "-" if rand() < 0.9 else choice(_WORDS)
        out.append(f'{ip} - {user} [{stamp}] "{choice(_METHODS)} {_fill(rng, choice(_PATHS))} HTTP/1.1" '
                   f'{status} {size} "{_fill(rng, choice(_REFERERS))}" "{choice(_AGENTS)}"')
    return out


def lines(count: int, seed: int = 1, start: int = 0) -> Iterator[str]:
    """``count`` lines (no newline), the ``start``-th to ``start+count-1``-th of the seed's stream.

    The stream is made of independently seeded blocks of 1,000 lines, so any slice of it is cheap
    to produce and a 100-file split holds exactly the same lines as the single file.
    """
    i, end = start, start + count
    while i < end:
        block, skip = divmod(i, 1000)
        chunk = _block(seed, block)[skip:skip + end - i]
        yield from chunk
        i += len(chunk)


def write_files(directory: Path, total: int, files: int, seed: int = 1, name: str = "access-{:03d}.log",
                progress=None) -> list[Path]:
    """Split ``total`` lines into ``files`` files (contiguous slices of one stream); returns the paths.

    Written once per (total, files, seed): a ``.done`` marker lets a second run reuse them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / f".done-{total}-{files}-{seed}"
    paths = [directory / name.format(k) for k in range(files)]
    if marker.exists() and all(p.exists() for p in paths):
        return paths
    written = 0
    for k, p in enumerate(paths):
        lo, hi = total * k // files, total * (k + 1) // files
        with open(p, "w", buffering=1 << 20) as f:
            buf: list[str] = []
            for line in lines(hi - lo, seed, lo):
                buf.append(line)
                if len(buf) >= 10000:
                    f.write("\n".join(buf) + "\n")
                    written += len(buf)
                    buf.clear()
                    if progress:
                        progress(written, total)
            if buf:
                f.write("\n".join(buf) + "\n")
                written += len(buf)
    if progress:
        progress(written, total)
    marker.touch()
    return paths


def total_bytes(paths: list[Path]) -> int:
    return sum(os.path.getsize(p) for p in paths)
