"""``logconsole``: serve the console (``--config /etc/logferry/console.ini``), or make a password hash.

uvicorn serves the app: one process, one event loop; Elasticsearch and etcd calls run in its
thread pool. TLS when the INI names a certificate; otherwise plain HTTP, meant for 127.0.0.1 or
behind a reverse proxy that terminates TLS (docs/console.md shows nginx's settings, including
those the live tail needs).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys

from logferry import __version__
from logferry.config import DEFAULT_CONSOLE_CONFIG, ConfigError, load_console_config

__all__ = ["main"]

log = logging.getLogger("logconsole")


def _hash_password(args: argparse.Namespace) -> int:
    from console.auth import hash_password

    if args.stdin:
        pw = sys.stdin.readline().rstrip("\n")
    else:
        pw = getpass.getpass("password: ")
        if getpass.getpass("again: ") != pw:
            print("logconsole: the two passwords differ; nothing made", file=sys.stderr)
            return 2
    if len(pw) < 8:
        print("logconsole: a password of at least 8 characters, please", file=sys.stderr)
        return 2
    print(hash_password(pw))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="logconsole",
        description="logferry's web console: search and follow the logs in Elasticsearch, see every host's "
                    "agent and collect list, edit collect lists and the transfer config in etcd.",
        epilog="Sign-in users go in the INI's [users] section as `name = role hash` (role read or admin); "
               "`logconsole hash-password` makes the hash. Without users the console only listens on a "
               "loopback address. See docs/console.md.")
    ap.add_argument("--config", default=DEFAULT_CONSOLE_CONFIG, help=f"the INI file (default {DEFAULT_CONSOLE_CONFIG})")
    ap.add_argument("--check-config", action="store_true",
                    help="read and validate the INI, print what it says (no secrets), and exit: 0 if valid")
    ap.add_argument("--version", action="version", version=f"logconsole {__version__}")
    sub = ap.add_subparsers(dest="command")
    hp = sub.add_parser("hash-password", help="read a password (twice, not echoed) and print its hash for [users]")
    hp.add_argument("--stdin", action="store_true", help="read one line from stdin instead (scripts, Ansible)")
    args = ap.parse_args(argv)
    if args.command == "hash-password":
        return _hash_password(args)

    try:
        cfg = load_console_config(args.config)
    except ConfigError as e:
        print(f"logconsole: {e}", file=sys.stderr)
        return 2
    if args.check_config:
        c = cfg.console
        print(f"{args.config}: valid. listen {c.listen} ({'TLS' if c.tls_cert_file else 'plain HTTP'}), "
              f"{len(c.users)} user(s){'' if c.users else ' (no sign-in: loopback only)'}; etcd "
              f"{', '.join(cfg.etcd.endpoints)} prefix {cfg.etcd.prefix}; Elasticsearch {', '.join(cfg.es.hosts)}")
        return 0
    logging.basicConfig(level=cfg.console.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)  # a line per request otherwise
    import uvicorn

    from console.app import Console, create_app
    from logferry.config import split_host_port

    app = create_app(Console(cfg))
    host, port = split_host_port(cfg.console.listen)
    scheme = "https" if cfg.console.tls_cert_file else "http"
    log.info("logconsole %s on %s://%s (%s)", __version__, scheme, cfg.console.listen,
             f"{len(cfg.console.users)} user(s)" if cfg.console.users else "no sign-in: loopback only")
    uvicorn.run(app, host=host.strip("[]"), port=port, log_level=cfg.console.log_level.lower(),
                access_log=False, ssl_certfile=cfg.console.tls_cert_file, ssl_keyfile=cfg.console.tls_key_file,
                proxy_headers=False, server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
