"""The console in a real browser (Debian's chromium through chromium-driver) on the real stack.

Real agents write real files to Kafka, a real transfer indexes them, and the console reads
Elasticsearch and etcd. The browser finds a line, checks the histogram and counts against what
Elasticsearch holds, opens a line's context, follows new lines live, edits a host's collect list
(a new input collected; an invalid list refused with its field named; a concurrent write
reported as a conflict), and shows a line holding HTML as text. Screenshots of each page go to
build/screenshots/ (README shows the search page).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.auth import hash_password
from integration.agents import wait_for
from integration.conftest import StackHandle
from integration.harness import VENV_BIN, Daemon
from integration.test_agent import (  # noqa: F401
    agents,
    prefix,
    set_list,
    status,
)
from integration.test_transfer import (  # noqa: F401
    es_count,
    es_count_soon,
    index_pattern,
    indices,
    put_config,
    transfer_config,
    transfers,
)

SHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not (CHROMEDRIVER and CHROMIUM),
                                reason="no chromium/chromium-driver (make test installs them with apt)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_console(home: Path, ini_lines: list[str]) -> tuple[str, Daemon]:
    """A logconsole with these INI lines (its [console] listen is set here), answering: (URL, daemon)."""
    port = free_port()
    home = home / f"console-{port}"
    home.mkdir()
    (home / "console.ini").write_text("\n".join(["[console]", f"listen = 127.0.0.1:{port}", *ini_lines, ""]))
    d = Daemon(f"console-{port}", [str(VENV_BIN / "logconsole"), "--config", str(home / "console.ini")],
               home / "console.log").start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert d.alive(), d.log_tail(30)
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for(up, 30, "the console to answer")
    return url, d


def stop_consoles(made: list[Daemon]) -> None:
    """Stop them; a traceback in a console's log fails the test."""
    for d in made:
        d.stop(10)
        text = d.log_tail(80)
        print(f"----- {d.name} log (tail)\n{text}")
        assert "Traceback" not in text, f"the console logged a traceback:\n{text}"


@pytest.fixture
def console(stack: StackHandle, tmp_path: Path, prefix: str) -> Iterator:  # noqa: F811
    """Factory: start a logconsole for this test's prefix; returns its base URL. Stopped at the end."""
    made: list[Daemon] = []

    def start(users: dict[str, tuple[str, str]] | None = None) -> str:
        lines = ["", "[etcd]", f"endpoints = {','.join(stack.etcd_endpoints)}", f"prefix = {prefix}", "",
                 "[elasticsearch]", f"hosts = {stack.es_url}", "",
                 "[kafka]", f"bootstrap_servers = {stack.kafka_bootstrap}", ""]
        if users:
            lines += ["[users]", *(f"{n} = {role} {hash_password(pw, iterations=20_000)}"
                                   for n, (role, pw) in users.items()), ""]
        url, d = start_console(tmp_path, lines)
        made.append(d)
        return url

    yield start
    stop_consoles(made)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900",
              "--disable-gpu", "--lang=en-US"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    drv.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield drv
    drv.quit()


def shot(drv, name: str) -> None:
    drv.save_screenshot(str(SHOTS / f"{name}.png"))


def until(drv, cond, what: str, timeout: float = 30):
    """Wait for a state of the page; on a timeout, keep a screenshot and say where the page was."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.2).until(lambda d: cond(d), message=what)
    except TimeoutException:
        shot(drv, "failed-" + re.sub(r"\W+", "-", what)[:60])
        body = drv.find_element("tag name", "body").text[:1500]
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; page {drv.current_url}:\n"
                             f"{body}") from None


def text_of(drv, css: str) -> str:
    from selenium.webdriver.common.by import By
    els = drv.find_elements(By.CSS_SELECTOR, css)
    return els[0].text if els else ""


def rows(drv) -> list[str]:
    # one script: the virtual list redraws its rows, an element found first could be gone when read
    return drv.execute_script("return [...document.querySelectorAll('#hits .row .msg')].map(e => e.textContent)")


def set_editor(drv, text: str) -> None:
    drv.execute_script("const t = document.getElementById('editor'); t.value = arguments[0];"
                       "t.dispatchEvent(new Event('input'));", text)


def test_console_search_context_live_tail_and_collect_list_editing(
        stack, etcd, es, prefix, agents, transfers, index_pattern, indices, topic_factory, console,  # noqa: F811
        browser, tmp_path):
    from selenium.webdriver.common.by import By

    ip = "10.212.0.10"
    topic = topic_factory("console")
    d = tmp_path / "app"
    d.mkdir()
    app_log = d / "app.log"
    token = f"checkout-failed-{int(time.time())}"
    lines = [f"req {i:03d} GET /api/cart 200 {12 + i}ms" for i in range(40)]
    lines[20] = f"req 020 POST /api/checkout 500 {token}"
    lines[30] = "req 030 <script>window.__pwned = 1</script><b>bold</b> <img src=x onerror=alert(1)>"
    app_log.write_text("".join(line + "\n" for line in lines))
    set_list(etcd, prefix, ip, [{"path": str(app_log), "topic": topic, "start_at": "beginning"}])
    put_config(etcd, prefix, transfer_config([topic], index_pattern, topic_factory("console-dlq")))
    agents("web7", ip, hostname="web7").start()
    transfers("console-t").start()
    wait_for(lambda: es_count_soon(es, indices) >= len(lines), 120, f"{len(lines)} lines in Elasticsearch")
    base = console()
    drv = browser

    # 1. a query finds the line; the histogram and the counts are what ES holds
    drv.get(f"{base}/?range=1h&q={token}")
    until(drv, lambda dr: any(token in r for r in rows(dr)), "the line found by its token")
    assert until(drv, lambda dr: text_of(dr, "#summary").startswith("1 line ·"), "the summary")
    drv.get(f"{base}/?range=1h")
    total = es_count(es, indices)
    until(drv, lambda dr: dr.find_element(By.ID, "summary").get_attribute("data-total") == str(total),
          f"the summary to say {total}")
    bars = [int(b.get_attribute("data-count")) for b in drv.find_elements(By.CSS_SELECTOR, "#histogram rect")]
    assert sum(bars) == total, f"histogram bars add up to {sum(bars)}, ES holds {total}"
    facet = {e.get_attribute("data-value"): e.find_element(By.XPATH, "..").find_element(By.CLASS_NAME, "count").text
             for e in drv.find_elements(By.CSS_SELECTOR, "#facet-host a")}
    assert facet == {"web7": str(total)}, facet
    topics = [e.get_attribute("data-value") for e in drv.find_elements(By.CSS_SELECTOR, "#facet-topic a")]
    assert topics == [topic]
    files = [e.get_attribute("data-value") for e in drv.find_elements(By.CSS_SELECTOR, "#facet-file a")]
    assert files == [str(app_log)]
    assert drv.find_element(By.ID, "hits").get_attribute("data-loaded") == str(total)
    shot(drv, "console-search")

    # 2. HTML in a line is text: nothing runs, no element is made of it
    assert any("<script>window.__pwned = 1</script><b>bold</b>" in r for r in rows(drv))
    assert drv.execute_script("return window.__pwned === undefined")
    assert not drv.find_elements(By.CSS_SELECTOR, "#hits .msg b, #hits .msg img, #hits .msg script")

    # 2b. older pages (search_after) hold every line once; an export holds the whole result set
    seen_ids: list[str] = []
    after = None
    while True:
        q = f"{base}/api/search?range=1h&size=7" + (f"&after={urllib.parse.quote(json.dumps(after))}" if after else "")
        with urllib.request.urlopen(q, timeout=30) as r:
            page = json.load(r)
        seen_ids += [h["id"] for h in page["hits"]]
        if len(page["hits"]) < 7:
            break
        after = page["hits"][-1]["sort"]
    assert len(seen_ids) == len(set(seen_ids)) == total, f"{len(seen_ids)} paged, {len(set(seen_ids))} distinct"
    eid = f"it{int(time.time())}"
    with urllib.request.urlopen(f"{base}/api/export?range=1h&format=ndjson&eid={eid}", timeout=60) as r:
        assert "attachment" in r.headers["Content-Disposition"]
        exported = [json.loads(line) for line in r.read().decode().splitlines()]
    # the export's progress, as the page polls it while the browser downloads
    with urllib.request.urlopen(f"{base}/api/export/progress?eid={eid}", timeout=10) as r:
        assert json.load(r) == {"lines": total, "done": True}
    drv.execute_script("searchPage.watchExport(arguments[0])", eid)
    until(drv, lambda dr: text_of(dr, "#tools-msg") == f"export done: {total:,} lines", "the export's progress shown")
    assert sorted(e["id"] for e in exported) == sorted(seen_ids)
    assert [e["ts"] for e in exported] == sorted((e["ts"] for e in exported), reverse=True)
    with urllib.request.urlopen(f"{base}/api/export?range=1h&format=csv&q={token}", timeout=60) as r:
        csv_rows = r.read().decode().splitlines()
    assert csv_rows[0] == "ts,host,ip,file,offset,topic,message" and len(csv_rows) == 2 and token in csv_rows[1]

    # 2c. a saved search, shared through etcd, opens the same view
    drv.get(f"{base}/?range=1h&q={token}")
    until(drv, lambda dr: any(token in r for r in rows(dr)), "the line by its token")
    drv.find_element(By.ID, "save-search").click()
    alert = until(drv, lambda dr: dr.switch_to.alert, "the name prompt")
    alert.send_keys("checkout failures")
    alert.accept()
    until(drv, lambda dr: "saved as" in text_of(dr, "#tools-msg"), "the search saved")
    saved = json.loads(etcd.get(f"{prefix}/console/searches/checkout failures")[0])
    assert saved["state"] == {"q": token, "range": "1h"} and saved["saved_by"] == "local"
    drv.get(f"{base}/?range=24h")
    until(drv, lambda dr: len(dr.find_elements(By.CSS_SELECTOR, "#saved option")) == 2, "the saved search listed")
    from selenium.webdriver.support.ui import Select
    Select(drv.find_element(By.ID, "saved")).select_by_value("checkout failures")
    until(drv, lambda dr: "q=" in dr.current_url and text_of(dr, "#summary").startswith("1 line ·"),
          "the saved view opened")
    assert drv.find_element(By.ID, "q").get_attribute("value") == token
    shot(drv, "console-saved-search")
    # ... and from the command line: logctl search --saved finds the same line; the page's export
    # and logctl search --json hold the same lines in the same order (newest first / oldest first)
    ctl_env = {k: v for k, v in os.environ.items() if not k.startswith("LOGFERRY_")} | {
        "LOGFERRY_ETCD": ",".join(stack.etcd_endpoints), "LOGFERRY_PREFIX": prefix, "LOGFERRY_ES": stack.es_url}

    def ctl_json(*args: str) -> list[dict]:
        cp = subprocess.run([str(VENV_BIN / "logctl"), "search", "--json", *args], capture_output=True, text=True,
                            env=ctl_env, timeout=60, stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, cp.stderr
        return [json.loads(line) for line in cp.stdout.splitlines()]

    by_saved = ctl_json("--saved", "checkout failures", "--topic", topic)
    assert [h["message"] for h in by_saved] == [lines[20]]
    by_ctl = ctl_json("--topic", topic, "--since", "1h", "-n", str(total + 10))
    assert [(h["_id"], h["message"]) for h in reversed(by_ctl)] == [(e["id"], e["message"]) for e in exported]

    # 3. a line's context: its neighbours in the file, in order
    drv.get(f"{base}/?range=1h&q={token}")
    until(drv, lambda dr: any(token in r for r in rows(dr)), "the line again")
    drv.find_element(By.CSS_SELECTOR, "#hits .row").click()
    until(drv, lambda dr: len(dr.find_elements(By.CSS_SELECTOR, "#context-lines .ctx")) == 21, "21 context lines")
    ctx = [e.text.split(" ", 1)[1].strip() if " " in e.text.strip() else e.text
           for e in drv.find_elements(By.CSS_SELECTOR, "#context-lines .ctx")]
    assert [re.sub(r"^\s*\d+\s+", "", c) for c in ctx] == lines[10:31], ctx
    offsets = [int(e.get_attribute("data-offset")) for e in drv.find_elements(By.CSS_SELECTOR, "#context-lines .ctx")]
    assert offsets == sorted(offsets) and len(set(offsets)) == 21
    assert token in text_of(drv, "#context-lines .this")
    shot(drv, "console-context")

    # 4. live tail: a line appended after the page opened appears without a reload
    drv.get(f"{base}/?range=15m&live=1")
    until(drv, lambda dr: dr.find_element(By.ID, "live").get_attribute("aria-pressed") == "true", "live on")
    time.sleep(1.5)  # the tail's starting point is taken when the stream opens; the line must come after
    fresh = f"live line {time.time_ns()}"
    with open(app_log, "a") as f:
        f.write(fresh + "\n")
    marker = drv.execute_script("return document.title")
    until(drv, lambda dr: any(fresh in r for r in rows(dr)), "the appended line in the live tail", timeout=60)
    assert drv.execute_script("return document.title") == marker  # same page, no reload
    shot(drv, "console-live")

    # 5. hosts: the host, its agent and its list; a new input makes the agent collect a new file
    drv.get(f"{base}/hosts")
    until(drv, lambda dr: dr.find_elements(By.CSS_SELECTOR, f'#hosts tr[data-ip="{ip}"]'), "the host row")
    row = drv.find_element(By.CSS_SELECTOR, f'#hosts tr[data-ip="{ip}"]').text
    assert "live" in row and "web7" in row and "(current)" in row, row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", row), f"no last-line time in {row!r}"
    shot(drv, "console-hosts")
    drv.get(f"{base}/hosts/{ip}")
    until(drv, lambda dr: '"topic"' in dr.find_element(By.ID, "editor").get_attribute("value"), "the editor filled")
    other = d / "other.log"
    other_line = f"a line of a file added in the console {time.time_ns()}"
    other.write_text(other_line + "\n")
    current = json.loads(drv.find_element(By.ID, "editor").get_attribute("value"))
    set_editor(drv, json.dumps([*current, {"path": str(other), "topic": topic, "start_at": "beginning"}], indent=2))
    until(drv, lambda dr: text_of(dr, "#check").startswith("valid"), "the list checked valid")
    assert "+" in text_of(drv, "#diff") and str(other) in text_of(drv, "#diff")
    drv.find_element(By.ID, "save").click()
    until(drv, lambda dr: "the agent applied it" in text_of(dr, "#saved"), "the agent to apply the new list", 60)
    shot(drv, "console-host")
    wait_for(lambda: es_count_soon(es, indices) >= total + 2, 90, "the live line and the new file's line in ES")
    drv.get(f"{base}/?range=1h&q=\"{other_line}\"")
    until(drv, lambda dr: any(other_line in r for r in rows(dr)), "the new file's line found", timeout=90)

    # 6. an invalid list: refused with its field named, etcd unchanged
    key = f"{prefix}/agents/{ip}/collect"
    before, rev_before = etcd.get(key)
    drv.get(f"{base}/hosts/{ip}")
    until(drv, lambda dr: '"topic"' in dr.find_element(By.ID, "editor").get_attribute("value"), "the editor filled")
    set_editor(drv, '[{"path": "relative/app.log", "topic": "app"}]')
    until(drv, lambda dr: "path" in text_of(dr, "#check") and text_of(dr, "#check") != "valid", "the field named")
    assert "relative" in text_of(drv, "#check")
    drv.find_element(By.ID, "save").click()
    until(drv, lambda dr: "path" in text_of(dr, "#saved"), "the save refused")
    assert etcd.get(key) == (before, rev_before)

    # 7. someone else (logctl) writes between load and save: a conflict, nothing overwritten
    drv.get(f"{base}/hosts/{ip}")
    until(drv, lambda dr: '"topic"' in dr.find_element(By.ID, "editor").get_attribute("value"), "the editor filled")
    theirs = json.dumps([{"path": str(app_log), "topic": topic}])
    etcd.put(key, theirs.encode())
    set_editor(drv, json.dumps([{"path": str(other), "topic": topic}]))
    drv.find_element(By.ID, "save").click()
    until(drv, lambda dr: "changed since you opened it" in text_of(dr, "#saved"), "the conflict reported")
    assert etcd.get(key)[0] == theirs.encode()

    # 8. transfers: the live transfer, its config, and the latest dead letter with its reason
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    p.produce(topic, value=b"<b>not json</b> from a broken producer", key=b"k")
    assert p.flush(30) == 0
    drv.get(f"{base}/transfers")
    until(drv, lambda dr: dr.find_elements(By.CSS_SELECTOR, "#transfers .panel"), "the transfer listed")
    until(drv, lambda dr: topic in dr.find_element(By.ID, "editor").get_attribute("value"), "the config shown")
    row = until(drv, lambda dr: [r for r in dr.find_elements(By.CSS_SELECTOR, "#dead-letters tbody tr")
                                 if "not json" in r.text] or (dr.refresh() and False), "the dead letter listed", 90)
    assert "invalid_record" in row[0].text and f"{topic}[0]@" in row[0].text, row[0].text
    assert "<b>not json</b>" in row[0].text and not drv.find_elements(By.CSS_SELECTOR, "#dead-letters b")
    shot(drv, "console-transfers")
    print(f"console: {total} lines, histogram {sum(bars)}, context 21 lines, live line seen, list edited; "
          f"screenshots in {SHOTS}")


def _client() -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))


def _call(opener, method: str, url: str, body: dict | None = None, headers: dict | None = None,
          form: dict | None = None) -> tuple[int, str]:
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


def test_console_with_users_needs_sign_in_roles_and_csrf(stack, etcd, prefix, console, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    base = console({"ops": ("admin", "admin-pass-1"), "dev": ("read", "read-pass-22")})
    ip = "10.212.0.11"
    key = f"{prefix}/agents/{ip}/collect"
    # nothing answers without a session
    bare = urllib.request.build_opener(_NoRedirect)
    assert _call(bare, "GET", base + "/")[0] == 303
    for path in ("/api/search?range=1h", "/api/hosts", "/api/transfers", f"/api/collect/{ip}"):
        assert _call(bare, "GET", base + path)[0] == 401, path
    assert _call(bare, "PUT", base + f"/api/collect/{ip}", {"text": "[]", "revision": 0})[0] == 401
    # a wrong password
    assert _call(_client(), "POST", base + "/login", form={"user": "ops", "password": "nope"})[0] == 401
    # read-only: searches, cannot write
    dev = _client()
    assert _call(dev, "POST", base + "/login", form={"user": "dev", "password": "read-pass-22"})[0] == 200
    assert _call(dev, "GET", base + "/api/hosts")[0] == 200
    page = _call(dev, "GET", base + f"/hosts/{ip}")[1]
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    code, body = _call(dev, "PUT", base + f"/api/collect/{ip}", {"text": "[]", "revision": 0},
                       {"X-CSRF-Token": token})
    assert code == 403 and "read only" in body
    # admin: a write without the CSRF token is refused, with it accepted; another origin refused
    ops = _client()
    assert _call(ops, "POST", base + "/login", form={"user": "ops", "password": "admin-pass-1"})[0] == 200
    assert _call(ops, "PUT", base + f"/api/collect/{ip}", {"text": "[]", "revision": 0})[0] == 403
    page = _call(ops, "GET", base + f"/hosts/{ip}")[1]
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    assert _call(ops, "PUT", base + f"/api/collect/{ip}", {"text": "[]", "revision": 0},
                 {"X-CSRF-Token": token, "Origin": "http://evil.example"})[0] == 403
    assert etcd.get(key)[0] is None
    code, body = _call(ops, "PUT", base + f"/api/collect/{ip}", {"text": "[]", "revision": 0}, {"X-CSRF-Token": token})
    assert code == 200 and json.loads(body)["result"] == "written"
    assert etcd.get(key)[0] is not None
    # the sign-in page in the browser
    drv = browser
    drv.delete_all_cookies()
    drv.get(base + "/hosts")
    until(drv, lambda dr: dr.find_elements(By.ID, "signin"), "the sign-in page")
    drv.find_element(By.ID, "user").send_keys("dev")
    drv.find_element(By.ID, "password").send_keys("read-pass-22")
    shot(drv, "console-login")
    drv.find_element(By.ID, "signin").click()
    until(drv, lambda dr: dr.find_elements(By.CSS_SELECTOR, f'#hosts tr[data-ip="{ip}"]'),
          "the hosts page after sign-in")
    assert "dev · read" in text_of(drv, ".who")
    assert not drv.find_elements(By.ID, "new-host")  # no write controls for a reader
    drv.delete_all_cookies()


def test_parsed_fields_are_facets_and_a_click_filters(
        stack, etcd, es, prefix, agents, transfers, index_pattern, indices, topic_factory, console,  # noqa: F811
        browser, tmp_path):
    """Lines parsed by the agent (docs/parsing.md) give the page facets on their fields: the values
    with their counts, including the lines that did not parse; a value clicked becomes field:value."""
    from selenium.webdriver.common.by import By

    ip = "10.212.0.30"
    topic = topic_factory("console-fields")
    d = tmp_path / "svc"
    d.mkdir()
    levels = ["INFO"] * 7 + ["ERROR"] * 3 + ["WARN"] * 2
    lines = [json.dumps({"level": lv, "msg": f"event {i}"}) for i, lv in enumerate(levels)] + ["{not json"]
    (d / "svc.log").write_text("".join(line + "\n" for line in lines))
    set_list(etcd, prefix, ip, [{"path": str(d / "svc.log"), "topic": topic, "start_at": "beginning",
                                 "parse": {"format": "json", "target": "svc"}}])
    put_config(etcd, prefix, transfer_config([topic], index_pattern, topic_factory("console-fields-dlq")))
    agents("svc1", ip, hostname="svc1").start()
    transfers("console-f").start()
    wait_for(lambda: es_count_soon(es, indices) >= len(lines), 120, f"{len(lines)} lines in Elasticsearch")
    base = console()
    drv = browser
    drv.get(f"{base}/?range=1h&topic={topic}")

    def facet(dr, field: str) -> dict[str, str]:
        return {a.get_attribute("data-value"): a.find_element(By.XPATH, "..").find_element(By.CLASS_NAME, "count").text
                for a in dr.find_elements(By.CSS_SELECTOR, f'#facet-fields ul[data-field="{field}"] a')}

    # the JSON lines' level went where the json target put it; log.flags counts the one that failed
    until(drv, lambda dr: facet(dr, "log.flags") == {"parse_failure": "1"}, "the parse failure counted")
    shot(drv, "console-field-facets")
    fields = [h.text for h in drv.find_elements(By.CSS_SELECTOR, "#facet-fields h3")]
    assert "log.flags" in fields, fields
    # a value clicked: the query becomes field:value and the result holds exactly those lines
    drv.find_element(By.CSS_SELECTOR, '#facet-fields ul[data-field="log.flags"] a[data-value="parse_failure"]').click()
    until(drv, lambda dr: "log.flags%3Aparse_failure" in dr.current_url or "log.flags:parse_failure" in dr.current_url,
          "the query in the URL")
    until(drv, lambda dr: text_of(dr, "#summary").startswith("1 line ·"), "exactly the line that did not parse")
    # the summary is written when the answer arrives, the rows at the next animation frame: wait for them
    until(drv, lambda dr: len(r := rows(dr)) == 1 and "{not json" in r[0], "that line drawn")
