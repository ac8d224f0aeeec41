"""Hostile answers against the daemon's limits, end to end.

1. Huge bodies. A proxy answers WDT queries with a page of 1 GiB, made on the fly (chunked,
   then announced by Content-Length), and Kingdee saves (after Kingdee stored the bill) with an
   answer of 1 GiB. The daemon's memory stays bounded (VmRSS and RssAnon read from /proc while
   it happens; a generous bound, not a timing), the log names http.max_body, the client hangs
   up long before the end, and the daemon goes on: every order gets exactly one bill (the saves
   whose answer was cut off are reconciled, not posted again).
2. Retry-After 99999999999999999999 (beyond any integer type) from Kingdee (a 429 on a save)
   and from WDT (a 429 on a query), with http.max_retry_after "5s": no crash (this test runs in
   the ASan+UBSan build too), status.json shows each service paused until at most
   now + 5 s, and the daemon resumes and posts everything."""

import os
import threading
import time
import urllib.parse

from wjtest import check, finish, read, wait_for
from e2e import close_stack, compare_bills, e2e_stack, log_tail, wait_settled
from hostile import Proxy

SAVE = "/jdy/inv/inv_check_gain_bill_save"
GIB = 1 << 30
RSS_BOUND_KB = 200 * 1024
HUGE_RETRY_AFTER = "99999999999999999999"

# In a sanitizer build freed memory waits in ASan's quarantine (256 MiB by default) before it
# is reused; a small one keeps RSS meaningful.
if "quarantine_size_mb" not in os.environ.get("ASAN_OPTIONS", ""):
    os.environ["ASAN_OPTIONS"] = ":".join(
        x for x in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=8") if x)


class Memory:
    """Samples VmRSS and RssAnon (kB) of a process until stopped; keeps the largest."""

    def __init__(self, pid):
        self.pid = pid
        self.peak = {"VmRSS": 0, "RssAnon": 0}
        self.samples = 0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                with open("/proc/%d/status" % self.pid) as f:
                    for line in f:
                        k = line.split(":")[0]
                        if k in self.peak:
                            self.peak[k] = max(self.peak[k], int(line.split()[1]))
                self.samples += 1
            except (OSError, ValueError):
                pass
            time.sleep(0.005)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.peak


def proxied(orders, seed, **over):
    st = e2e_stack(orders, span_days=2, seed=seed, **over)
    st.wp = Proxy(st.wdt.url)
    st.jp = Proxy(st.jdy.url)
    st.cfg["wdt"]["url"] = st.wp.url + "/router/qm"
    st.cfg["kingdee"]["url"] = st.jp.url
    st.write()
    return st


def polled(r):
    """A query of a poller, not the start-up check's (page_size 1), which would take the rule."""
    form = dict(urllib.parse.parse_qsl(r.body.decode("utf-8", "replace"))) if r.body else {}
    form.update(r.query)
    return r.path == "/router/qm" and form.get("page_size") != "1"


def close(st):
    """Stop everything (again: a no-op); the daemon's exit status the first time."""
    if getattr(st, "closed", False):
        return None
    st.closed = True
    rc = close_stack(st)
    st.wp.close()
    st.jp.close()
    return rc


def exactly_once(st, elig, what):
    missing, dups, extra, problems = compare_bills(st.bills(), elig, "v1")
    check(not missing and not dups and not extra,
          "%s: exactly one bill per order (missing %d, duplicated %d, unexpected %d)"
          % (what, len(missing), len(dups), len(extra)))


# ---- 1. huge bodies ----------------------------------------------------------------------
st = proxied(40, 1717)
try:
    elig = st.eligible()
    w1 = st.wp.add(polled, "huge", times=1, size=GIB, announce=False)
    w2 = st.wp.add(polled, "huge", times=1, size=GIB, announce=True)
    k1 = st.jp.add(lambda r: r.path == SAVE, "huge", times=1, size=GIB, after=True)
    k2 = st.jp.add(lambda r: r.path == SAVE, "huge", times=1, size=GIB, after=True,
                   announce=True)
    st.start()
    mem = Memory(st.daemon.proc.pid)
    took, nb, nd = wait_settled(st, len(elig), timeout=120)
    peak = mem.stop()
    check(took is not None and nd == 0, "settled after the huge answers: %d bills, %d dead"
          % (nb, nd))
    if took is None:
        print(log_tail(st))
    check(w1.used == w2.used == k1.used == k2.used == 1, "each huge answer was served once")
    huge = st.wp.seen(lambda r: r.action == "huge") + st.jp.seen(lambda r: r.action == "huge")
    check(len(huge) == 4 and all(r.sent < GIB for r in huge),
          "the daemon hung up long before 1 GiB (sent: %s MiB)"
          % [r.sent >> 20 for r in huge])
    check(mem.samples > 50 and 0 < peak["VmRSS"] < RSS_BOUND_KB and
          peak["RssAnon"] < RSS_BOUND_KB,
          "memory stayed bounded: peak VmRSS %d MiB, RssAnon %d MiB (bound %d MiB, %d samples)"
          % (peak["VmRSS"] >> 10, peak["RssAnon"] >> 10, RSS_BOUND_KB >> 10, mem.samples))
    log = read(st.log)
    wdt_lines = [l for l in log.splitlines() if "mod=poller" in l and "http.max_body" in l]
    jdy_lines = [l for l in log.splitlines() if "mod=dispatch" in l and "http.max_body" in l]
    check(len(wdt_lines) >= 2, "the log names http.max_body for the WDT pages (%d lines)"
          % len(wdt_lines))
    check(len(jdy_lines) >= 2, "the log names http.max_body for the Kingdee answers (%d lines)"
          % len(jdy_lines))
    exactly_once(st, elig, "huge bodies")
    check(st.daemon.alive(), "the daemon goes on")
    check(close(st) == 0, "daemon exits 0")
finally:
    close(st)

# ---- 2. Retry-After beyond any integer ---------------------------------------------------
st = proxied(30, 1818, http={"max_retry_after": "5s"})
try:
    elig = st.eligible()
    too_long = [("Retry-After", HUGE_RETRY_AFTER), ("Content-Type", "application/json")]
    wr = st.wp.add(polled, "status_before", times=1, status=429, headers=too_long,
                   body='{"response":{"flag":"failure","code":"1012","message":"系统调用频繁"}}')
    kr = st.jp.add(lambda r: r.path == SAVE, "status_before", times=1, status=429,
                   headers=too_long, body='{"errcode":429,"description":"too many requests"}')
    st.start()

    def paused(name):
        s = st.status()
        until = ((s.get("endpoints") or {}).get(name) or {}).get("paused_until_ms")
        return (until, time.time() * 1000) if until else None

    for name, rule in (("wdt", wr), ("kingdee", kr)):
        seen = wait_for(lambda: paused(name), timeout=90, step=0.1)
        check(rule.used == 1, "%s answered 429 with Retry-After %s" % (name, HUGE_RETRY_AFTER))
        until, now = seen if seen else (None, 0)
        check(until is not None and until <= now + 5000 + 50,
              "%s: status shows the pause ending at most 5 s after now (%s ms after)"
              % (name, None if until is None else int(until - now)))
        check(st.daemon.alive(), "%s: no crash on the huge Retry-After" % name)
    took, nb, nd = wait_settled(st, len(elig), timeout=120)
    check(took is not None and nd == 0 and nb == len(elig),
          "the daemon resumed and posted everything: %d bills, %d dead" % (nb, nd))
    if took is None:
        print(log_tail(st))
    exactly_once(st, elig, "Retry-After")
    check("rate limited: pausing all calls for 5000 ms" in read(st.log),
          "the log shows the pause cut to http.max_retry_after")
    check(close(st) == 0, "daemon exits 0")
finally:
    close(st)
finish()
