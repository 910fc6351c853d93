"""The console behind a real nginx, with the configuration docs/console.md documents (read from it).

Debian's nginx runs as this test's own process (its own prefix, config and free port; no system
service), TLS with a certificate made here, in front of a console with users. Chromium signs in
through it, saves a search (a write: session cookie, CSRF token and Origin/Host passed on), and
follows the live tail: a line made searchable after the stream started is shown within 2 s, which
a proxy buffering the stream would not do.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from console.auth import hash_password
from integration.agents import wait_for
from integration.harness import VENV_BIN, Daemon
from integration.test_console import CHROMEDRIVER, CHROMIUM, SHOTS, free_port, text_of, until

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
DOC = Path(__file__).resolve().parent.parent / "docs" / "console.md"
pytestmark = pytest.mark.skipif(not (CHROMEDRIVER and CHROMIUM and NGINX),
                                reason="needs chromium, chromium-driver and nginx (apt-get install -y nginx-light)")


def documented_nginx_config() -> str:
    """The nginx block of docs/console.md's "Behind a reverse proxy"."""
    text = DOC.read_text()
    section = text[text.index("## Behind a reverse proxy"):]
    m = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert m, "docs/console.md has no nginx block under 'Behind a reverse proxy'"
    return m.group(1)


@pytest.fixture
def stack_bits(stack) -> Iterator[tuple]:
    """An index template, a transfer config naming this test's indices, and an ES client."""
    from elasticsearch import Elasticsearch

    from logferry.etcd import EtcdClient
    from transfer.template import template_body

    tag = uuid.uuid4().hex[:8]
    es = Elasticsearch(stack.es_url, request_timeout=60)
    etcd = EtcdClient(stack.etcd_endpoints)
    body = template_body([f"itngx-{tag}-*-*"])
    body.pop("_meta")
    es.indices.put_index_template(name=f"itngx-{tag}", **body)
    prefix = f"/it-ngx-{tag}"
    etcd.put(f"{prefix}/transfer/config",
             json.dumps({"topics": ["app"], "index": f"itngx-{tag}-{{topic}}-{{yyyy.MM.dd}}"}).encode())
    yield tag, prefix, es, etcd
    es.options(ignore_status=[404]).indices.delete(index=f"itngx-{tag}-*", expand_wildcards="all")
    es.options(ignore_status=[404]).indices.delete_index_template(name=f"itngx-{tag}")
    es.close()
    etcd.close()


def index_line(es, tag: str, message: str, n: int) -> None:
    now = datetime.now(UTC)
    es.index(index=f"itngx-{tag}-app-{now:%Y.%m.%d}", id=f"{tag}-{n}", refresh=True, document={
        "@timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z", "message": message,
        "host": {"name": "web-ngx", "ip": "10.78.0.1"}, "log": {"file": {"path": "/var/log/ngx.log"}, "offset": n * 80},
        "event": {"id": f"{tag}-{n}"}})


def test_live_tail_sign_in_and_writes_through_nginx(stack, stack_bits, tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    tag, prefix, es, etcd = stack_bits
    index_line(es, tag, "an older line, there before the tail", 0)
    # the console, with users, on loopback
    cport = free_port()
    home = tmp_path / "console"
    home.mkdir()
    (home / "console.ini").write_text("\n".join([
        "[console]", f"listen = 127.0.0.1:{cport}", "", "[users]",
        f"ops = read {hash_password('ngx-pass-1', iterations=20_000)}", "", "[etcd]",
        f"endpoints = {','.join(stack.etcd_endpoints)}", f"prefix = {prefix}", "",
        "[elasticsearch]", f"hosts = {stack.es_url}", ""]))
    con = Daemon("console-ngx", [str(VENV_BIN / "logconsole"), "--config", str(home / "console.ini")],
                 home / "console.log").start()
    # nginx: the documented server block, with this test's port, certificate and upstream
    nport = free_port()
    ngx = tmp_path / "nginx"
    for d in ("logs", "tmp", "tls"):
        (ngx / d).mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(ngx / "tls" / "key.pem"), "-out", str(ngx / "tls" / "cert.pem")],
                   check=True, capture_output=True)
    server = (documented_nginx_config()
              .replace("server 127.0.0.1:8430;", f"server 127.0.0.1:{cport};")
              .replace("listen 443 ssl;", f"listen 127.0.0.1:{nport} ssl;")
              .replace("/etc/nginx/tls/logs.example.org.crt", str(ngx / "tls" / "cert.pem"))
              .replace("/etc/nginx/tls/logs.example.org.key", str(ngx / "tls" / "key.pem")))
    assert f"127.0.0.1:{cport}" in server and f"127.0.0.1:{nport} ssl" in server and "cert.pem" in server
    tmp = ngx / "tmp"
    (ngx / "nginx.conf").write_text(f"""
worker_processes 1;
pid {ngx}/nginx.pid;
error_log {ngx}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {ngx}/logs/access.log;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
    uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
{server}
}}
""")
    if subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0":
        (ngx / "nginx.conf").write_text("user root root;\n" + (ngx / "nginx.conf").read_text())
    check = subprocess.run([NGINX, "-t", "-p", str(ngx), "-c", str(ngx / "nginx.conf")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proxy = Daemon("nginx", [NGINX, "-p", str(ngx), "-c", str(ngx / "nginx.conf"), "-g", "daemon off;"],
                   ngx / "logs" / "stdout.log").start()
    base = f"https://127.0.0.1:{nport}"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900", "--disable-gpu",
              "--ignore-certificate-errors"):
        opts.add_argument(a)
    drv = None
    try:
        import ssl
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE

        def up() -> bool:
            assert con.alive(), con.log_tail(30)
            assert proxy.alive(), (ngx / "logs" / "error.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=2, context=ctx) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(up, 30, "the console answering through nginx")
        drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        drv.set_page_load_timeout(30)
        # sign in through nginx (a POST with Origin: Host must be passed on with its port)
        drv.get(base + "/")
        until(drv, lambda dr: dr.find_elements(By.ID, "signin"), "the sign-in page through nginx")
        drv.find_element(By.ID, "user").send_keys("ops")
        drv.find_element(By.ID, "password").send_keys("ngx-pass-1")
        drv.find_element(By.ID, "signin").click()
        until(drv, lambda dr: "ops · read" in text_of(dr, ".who"), "signed in through nginx")
        # a write through nginx: cookie, CSRF token and Origin arrive as the browser sent them
        status = drv.execute_async_script("""
            const done = arguments[arguments.length - 1];
            fetch('/api/searches/through%20nginx', {method: 'PUT', credentials: 'same-origin',
              headers: {'Content-Type': 'application/json',
                        'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
              body: JSON.stringify({state: {q: 'ngx', range: '1h'}, revision: 0})}).then(r => done(r.status));""")
        assert status == 200, status
        assert json.loads(etcd.get(f"{prefix}/console/searches/through nginx")[0])["saved_by"] == "ops"
        # the live tail through nginx: started (the first event came through), then a new line within 2 s
        drv.get(base + "/?range=15m&live=1")
        until(drv, lambda dr: dr.find_element(By.ID, "live").get_attribute("data-stream") == "started",
              "the live stream started through nginx (its first event not held in a buffer)")
        line = f"through nginx {time.time_ns()}"
        index_line(es, tag, line, 1)  # searchable from now (refresh=true)
        t0 = time.monotonic()
        until(drv, lambda dr: any(line in e.text for e in dr.find_elements(By.CSS_SELECTOR, "#hits .row .msg")),
              "the new line in the live tail through nginx", timeout=10)
        took = time.monotonic() - t0
        print(f"nginx: a new line shown in the live tail {took:.2f}s after it became searchable")
        assert took <= 2.0, f"the new line took {took:.2f}s through nginx (≤ 2 s wanted)"
        drv.save_screenshot(str(SHOTS / "console-live-nginx.png"))
        access = (ngx / "logs" / "access.log").read_text()
        assert "PUT /api/searches/through%20nginx" in access, access[-1500:]  # it went through nginx
    finally:
        if drv is not None:
            drv.quit()
        proxy.stop(10)
        con.stop(10)
        text = con.log_tail(60)
        print(f"----- console log (tail)\n{text}\n----- nginx error.log (tail)\n"
              f"{(ngx / 'logs' / 'error.log').read_text()[-1500:]}")
        assert "Traceback" not in text, text
