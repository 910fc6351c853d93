"""``python -m integration.docker {images,up,down-all}``: the Docker-backed stack by hand.

- ``images``: build (or pull) the images the suite uses and print their names;
- ``up``: start the containers, print the environment tests and daemons need, wait for Ctrl-C
  (then remove them);
- ``down-all``: remove every container and network a logferry Docker stack left behind.
"""

from __future__ import annotations

import argparse
import signal
import sys

from integration.docker import engine, images
from integration.docker.stack import DockerStack, remove_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m integration.docker", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["images", "up", "down-all"])
    args = ap.parse_args(argv)
    say = lambda m: print(m, flush=True)  # noqa: E731
    client = engine.client_or_start(say)
    if client is None:
        return 1
    if args.command == "images":
        for role, name in images.resolve_images(client, say).items():
            print(f"{role}\t{name}")
        return 0
    if args.command == "down-all":
        remove_all(say)
        return 0
    st = DockerStack(images=images.resolve_images(client, say), log=say)
    st.up()
    for k, v in st.env().items():
        print(f"export {k}={v}")
    try:
        signal.sigwait([signal.SIGINT, signal.SIGTERM])
    finally:
        st.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
