"""The one-command demo (test/demo.py) on the current build: a full run, its progress and final
counts, a run interrupted with SIGINT, a kept state directory, and a build missing a program
(the demo builds it)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from wjtest import BUILD, CTL, DAEMON, SOURCE, check, finish, read_json, wait_for

DEMO = os.path.join(SOURCE, "test", "demo.py")
PROGRESS = re.compile(r"^bills (\d+)/(\d+)  dead (\d+)  queue (\d+)  cursor (.+)$", re.M)
STOPPED_OK = "stopped: wdt2jdyd exit 0, fake_jdy exit 0, fake_wdt exit 0"


def demo(*args, timeout=300):
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    p = subprocess.run([sys.executable, DEMO, "--build", BUILD] + list(args),
                       capture_output=True, text=True, timeout=timeout, env=env)
    return p.returncode, p.stdout, p.stderr


def count(out, label):
    """The number after a final count's label ("bills saved     340 (...)"), or None."""
    m = re.search(r"^%s +(\d+)" % re.escape(label), out, re.M)
    return int(m.group(1)) if m else None


def config_path(out):
    m = re.search(r"^demo: wdt2jdyd -c (\S+) \(pid (\d+)\)$", out, re.M)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def gone(pid):
    """True when pid no longer runs (or is a zombie waiting for a parent that is not us)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return True


def test_shipped_config():
    p = subprocess.run([DAEMON, "--check", "-c", os.path.join(SOURCE, "etc", "demo.json")],
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 0 and "configuration OK" in p.stdout,
          "etc/demo.json as shipped passes wdt2jdyd --check (rc %d %s)"
          % (p.returncode, p.stderr.strip()))


def test_full_run():
    t0 = time.monotonic()
    rc, out, err = demo()
    took = time.monotonic() - t0
    if not check(rc == 0, "demo exits 0 (rc %d)" % rc):
        print(out[-4000:] + err[-4000:])
    check(took < 60, "demo with the default backlog takes under a minute (%.1fs)" % took)
    progress = PROGRESS.findall(out)
    check(len(progress) >= 2, "demo prints progress lines (%d)" % len(progress))
    orders = count(out, "orders at WDT")
    eligible = count(out, "eligible")
    bills = count(out, "bills saved")
    dead = count(out, "dead letters")
    check(None not in (orders, eligible, bills, dead),
          "final counts printed: orders %s, eligible %s, bills %s, dead %s"
          % (orders, eligible, bills, dead))
    if None in (orders, eligible, bills, dead):
        print(out[-4000:])
        return
    check(orders == 500, "default backlog is 500 orders (%d)" % orders)
    check(0 < eligible < orders, "some but not all orders are eligible (%d)" % eligible)
    check(bills + dead == eligible, "bills + dead = eligible (%d + %d = %d)"
          % (bills, dead, eligible))
    check(dead > 0, "the deliberately invalid orders became dead letters (%d)" % dead)
    m = re.search(r"^bills saved +\d+ \(distinct markers (\d+), duplicates (\d+)\)$", out, re.M)
    check(m and int(m.group(1)) == bills and m.group(2) == "0",
          "every bill has its own marker, no duplicates")
    reasons = re.findall(r"^  RK\S+ +(unknown_material|zero_qty|unknown_store|empty_details)"
                         r" +\S.*$", out, re.M)
    check(len(reasons) == min(dead, 10),
          "each dead letter is listed with its kind and reason (%d lines)" % len(reasons))
    check("consistent      yes" in out, "demo reports a consistent run")
    last = progress[-1] if progress else None
    check(last and int(last[0]) == bills and int(last[1]) == eligible and int(last[2]) == dead
          and last[3] == "0", "the last progress line matches the final counts (%s)" % (last,))
    check(STOPPED_OK in out, "daemon and both fakes stopped with exit 0")
    cfg, pid = config_path(out)
    check(cfg and not os.path.exists(os.path.dirname(cfg)),
          "the temporary directory is removed without --keep (%s)" % cfg)
    check(pid and gone(pid), "the daemon is gone")


def test_interrupt():
    """SIGINT (Ctrl-C) in the middle of a larger backlog stops everything cleanly."""
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    p = subprocess.Popen([sys.executable, DEMO, "--build", BUILD, "--orders", "4000"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []

    def reader():
        for line in p.stdout:
            lines.append(line)
    t = threading.Thread(target=reader, daemon=True)
    t.start()

    def working():
        return any(m and int(m.group(4)) > 0 for m in map(PROGRESS.match, lines))
    busy = wait_for(working, timeout=60, step=0.05)
    check(busy, "progress shows a non-empty queue before the interrupt")
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    t.join(10)
    out = "".join(lines)
    if not check(rc == 130, "interrupted demo exits 130 (rc %s)" % rc):
        print(out[-4000:])
    check("demo: interrupted; stopping" in out, "demo says it was interrupted")
    check(STOPPED_OK in out, "after SIGINT the daemon and both fakes exited 0")
    check("finished in" not in out, "no final counts after an interrupt")
    cfg, pid = config_path(out)
    check(pid and wait_for(lambda: gone(pid), timeout=5), "the daemon is gone")
    check(cfg and not os.path.exists(os.path.dirname(cfg)), "the temporary directory is removed")


def test_keep():
    rc, out, err = demo("--orders", "120", "--bad-pct", "0", "--keep")
    check(rc == 0, "small demo without invalid orders exits 0 (rc %d)" % rc)
    eligible, bills, dead = count(out, "eligible"), count(out, "bills saved"), \
        count(out, "dead letters")
    check(dead == 0 and bills == eligible and eligible,
          "no invalid orders: every eligible order is a bill (%s/%s, dead %s)"
          % (bills, eligible, dead))
    cfg, _ = config_path(out)
    kept = cfg and os.path.isfile(cfg)
    check(kept and ("kept %s" % os.path.dirname(cfg)) in out,
          "--keep keeps the directory and says where")
    if not kept:
        return
    p = subprocess.run([CTL, "-c", cfg, "status", "--json"], capture_output=True, text=True,
                       timeout=60)
    try:
        st = json.loads(p.stdout)
    except ValueError:
        st = {}
    check(st.get("orders") == eligible and st.get("dead") == 0
          and st.get("queue", {}).get("ready") == 0,
          "wdt2jdyctl status on the kept state: %s orders, %s dead"
          % (st.get("orders"), st.get("dead")))
    status = read_json(os.path.join(os.path.dirname(cfg), "status.json")) or {}
    check(status.get("posted") == bills, "kept status.json counts the posted bills (%s)"
          % status.get("posted"))
    shutil.rmtree(os.path.dirname(cfg), ignore_errors=True)


def test_no_build():
    """A build without one of the programs is completed by the demo itself (ninja), and the
    demo then runs."""
    exe = os.path.join(BUILD, "test", "fake", "fake_jdy")
    os.rename(exe, exe + ".moved")
    try:
        rc, out, err = demo("--orders", "20", "--days", "1", timeout=600)
    finally:
        if not os.path.exists(exe):
            os.rename(exe + ".moved", exe)
        elif os.path.exists(exe + ".moved"):
            os.unlink(exe + ".moved")
    check("building: ninja -C" in out and os.access(exe, os.X_OK),
          "a missing program is built by the demo (%r)" % (out[:200] + err[-300:]))
    check(rc == 0 and STOPPED_OK in out, "the demo then runs (rc %d)" % rc)


if __name__ == "__main__":
    if not all(os.access(os.path.join(BUILD, x), os.X_OK)
               for x in ("test/fake/fake_wdt", "test/fake/fake_jdy")):
        print("1..0 # SKIP fake servers not built (libmicrohttpd missing)")
        sys.exit(77)
    test_shipped_config()
    test_no_build()
    test_full_run()
    test_interrupt()
    test_keep()
    finish()
