#!/usr/bin/env python3
"""One-command demo of wdt2jdy: the real daemon against the bundled fake servers.

    python3 test/demo.py [--build DIR] [--orders N] [--days D] [--bad-pct P] [--keep]

Starts the fake WDT (with a backlog of stock-in orders over the last few days, a few of them
deliberately invalid) and the fake Kingdee gateway on free loopback ports, writes the config
from etc/demo.json into a temporary directory, runs wdt2jdyd on it, prints progress every
second until every eligible order is either a gain bill or a dead letter, prints the final
counts, and stops everything with SIGTERM. Exit status: 0 when the run is consistent and every
program exited 0, 1 when something went wrong, 130 when interrupted (Ctrl-C stops cleanly).

Python's standard library only."""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BUILDS = ("build-ci-plain", "build")
PROGRAMS = {"wdt2jdyd": "daemon/wdt2jdyd", "wdt2jdyctl": "daemon/wdt2jdyctl",
            "fake_wdt": "test/fake/fake_wdt", "fake_jdy": "test/fake/fake_jdy"}
MAX_SHOWN = 10  # dead letters listed one by one

stop_signal = None
unclean_stops = []  # programs that did not exit 0 when stopped


def on_signal(signum, _frame):
    global stop_signal
    stop_signal = signum


def say(text=""):
    print(text, flush=True)


def fail(text):
    print("demo: " + text, file=sys.stderr, flush=True)


# ---- configuration ---------------------------------------------------------------------

def strip_comments(text):
    """Drop // and # comments (whole lines or the rest of a line outside strings), as the
    daemon's configuration reader does."""
    out = []
    for line in text.splitlines():
        in_str = esc = False
        cut = len(line)
        for i, ch in enumerate(line):
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "#" or line.startswith("//", i):
                cut = i
                break
        out.append(line[:cut])
    return "\n".join(out)


def substitute(node, repl):
    """A copy of a JSON value with every placeholder in its strings replaced."""
    if isinstance(node, dict):
        return {k: substitute(v, repl) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, repl) for v in node]
    if isinstance(node, str):
        for k, v in repl.items():
            node = node.replace(k, v)
    return node


def per_minute(rate):
    """A config rate ("N/min" or "N/s") as calls per minute."""
    n, _, unit = rate.partition("/")
    return int(n) * (60 if unit == "s" else 1)


def wdt_time(epoch, offset):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch + offset))


def tz_seconds(tz):
    sign = -1 if tz.startswith("-") else 1
    h, _, m = tz.lstrip("+-").partition(":")
    return sign * (int(h) * 3600 + int(m or 0) * 60)


# ---- processes -------------------------------------------------------------------------

class Proc:
    """A child program in its own session (so that Ctrl-C reaches only the demo, which then
    stops the children in order), with stdout and stderr in a file."""

    def __init__(self, name, argv, log_path, notify=None):
        self.name = name
        self.log_path = log_path
        self.log = open(log_path, "ab")
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        if notify:
            env["NOTIFY_SOCKET"] = notify.path
        self.notify = notify
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True, env=env)
        self.rc = None

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=30.0):
        """SIGTERM and wait; SIGKILL after timeout. Returns the exit status."""
        if self.notify:
            self.notify.wait_ready(self, 10.0, interruptible=False)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                fail("%s did not stop within %ds; killed" % (self.name, timeout))
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.rc = self.proc.returncode
        return self.rc

    def tail(self, n=15):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class Notify:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET: the demo waits for the
    daemon's READY=1 before it goes on, and before it sends SIGTERM (a signal that arrives
    before the daemon has set up its handlers ends it with the default action)."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.ready = False

    def poll(self):
        while True:
            try:
                msg = self.sock.recv(4096).decode(errors="replace")
            except (BlockingIOError, InterruptedError):
                return self.ready
            if "READY=1" in msg.split("\n"):
                self.ready = True

    def wait_ready(self, proc, timeout, interruptible=True):
        """Wait for READY=1 while proc runs; False on timeout, exit or (if interruptible)
        a stop signal."""
        deadline = time.monotonic() + timeout
        while not self.poll():
            if (not proc.alive() or time.monotonic() > deadline
                    or (interruptible and stop_signal is not None)):
                return self.poll()
            time.sleep(0.02)
        return True

    def close(self):
        self.sock.close()


def start_fake(name, binary, args, tmp, timeout=20.0):
    """Start a fake on a free loopback port (port 0 + port file). Returns (Proc, url)."""
    port_file = os.path.join(tmp, name + ".port")
    p = Proc(name, [binary, "--port", "0", "--port-file", port_file] + args,
             os.path.join(tmp, name + ".log"))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and stop_signal is None:
        if not p.alive():
            raise RuntimeError("%s exited with %s:\n%s" % (name, p.proc.returncode, p.tail()))
        try:
            with open(port_file) as f:
                text = f.read()
            if text.endswith("\n"):
                return p, "http://127.0.0.1:%d" % int(text)
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    p.stop()
    if stop_signal is not None:
        raise KeyboardInterrupt
    raise RuntimeError("%s did not write its port file within %ds" % (name, timeout))


def http_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def ctl(bins, cfg_path, *args):
    return subprocess.run([bins["wdt2jdyctl"], "-c", cfg_path] + list(args),
                          capture_output=True, text=True, timeout=60)


def ctl_state(bins, cfg_path):
    """wdt2jdyctl status --json (counts straight from the LMDB state), {} if unreadable."""
    try:
        p = ctl(bins, cfg_path, "status", "--json")
        return json.loads(p.stdout) if p.returncode == 0 else {}
    except (ValueError, subprocess.TimeoutExpired, OSError):
        return {}


def dead_letters(bins, cfg_path, flow):
    """[(stockin_no, reason)] of flow from `wdt2jdyctl dlq list`, or None if it failed."""
    try:
        p = ctl(bins, cfg_path, "dlq", "list")
    except (subprocess.TimeoutExpired, OSError):
        return None
    if p.returncode != 0:
        return None
    out = []
    for line in p.stdout.splitlines()[1:]:
        cols = line.split(None, 4)
        if len(cols) == 5 and cols[0] == flow:
            out.append((cols[1], cols[4]))
    return out


def find_build(arg):
    """The build directory: --build, else the first of DEFAULT_BUILDS that holds the built
    programs, else the first that exists (to say what is missing there)."""
    if arg:
        return arg
    dirs = [os.path.join(SOURCE, d) for d in DEFAULT_BUILDS]
    for path in dirs:
        if all(os.access(os.path.join(path, p), os.X_OK) for p in PROGRAMS.values()):
            return path
    return next((path for path in dirs if os.path.isdir(path)), None)


# ---- the run ---------------------------------------------------------------------------

def build_programs(build):
    """Configure (if needed) and build build; True when it worked."""
    for tool in ("meson", "ninja"):
        if not shutil.which(tool):
            fail("%s is not installed: it is needed to build the demo (see the README's "
                 "\"Building and installing\")" % tool)
            return False
    steps = []
    if not os.path.isfile(os.path.join(build, "build.ninja")):
        steps.append(["meson", "setup", build, SOURCE])
    targets = [p for p in PROGRAMS.values()]
    steps.append(["ninja", "-C", build] + targets)
    for cmd in steps:
        say("building: %s" % " ".join(cmd))
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            fail("build failed: %s" % " ".join(cmd))
            return False
    return True


def programs(build_arg):
    """{name: path} of the built programs, built first when any is missing; or None (after
    saying why)."""
    build = find_build(build_arg) or os.path.join(SOURCE, "build")
    bins = {k: os.path.join(build, v) for k, v in PROGRAMS.items()}
    if any(not os.access(p, os.X_OK) for p in bins.values()) and not build_programs(build):
        return None
    missing = [p for p in bins.values() if not os.access(p, os.X_OK)]
    if missing:
        fail("not built: %s" % ", ".join(missing))
        return None
    return bins


def run(opts, bins, tmp):
    with open(opts.config, encoding="utf-8") as f:
        cfg = json.loads(strip_comments(f.read()))
    offset = tz_seconds(cfg.get("timezone", "+08:00"))
    flow = cfg["flows"][0]["name"]  # the one whose progress is shown
    # The backlog: --days of orders ending an hour ago, so that all of it is past the lag.
    now = int(time.time())
    start_epoch = now - opts.days * 86400 - 3600
    start_epoch -= (start_epoch + offset) % 3600
    start = wdt_time(start_epoch, offset)

    procs = []
    notify = None
    try:
        say("demo: %d orders at the fake WDT over %d days from %s, %d%% of the eligible "
            "ones invalid" % (opts.orders, opts.days, start, opts.bad_pct))
        wdt, wdt_url = start_fake("fake_wdt", bins["fake_wdt"], [
            "--orders", str(opts.orders), "--seed", str(opts.seed), "--start", start,
            "--span-days", str(opts.days), "--bad-pct", str(opts.bad_pct),
            "--tz", cfg.get("timezone", "+08:00"),
            "--rate-limit", str(per_minute(cfg["wdt"]["rate_limit"]))], tmp)
        procs.append(wdt)
        jdy, jdy_url = start_fake("fake_jdy", bins["fake_jdy"], [
            "--seed", str(opts.seed),
            "--rate-limit", str(per_minute(cfg["kingdee"]["rate_limit"]))], tmp)
        procs.append(jdy)
        say("demo: fake WDT at %s, fake Kingdee at %s" % (wdt_url, jdy_url))

        cfg = substitute(cfg, {"WDT_PORT": wdt_url.rsplit(":", 1)[1],
                               "JDY_PORT": jdy_url.rsplit(":", 1)[1], "DEMO_DIR": tmp})
        for f in cfg["flows"]:
            f["cursor"]["start"] = start
        cfg_path = os.path.join(tmp, "wdt2jdy.json")
        with open(cfg_path, "w", encoding="utf-8") as f:
            f.write("// Written by test/demo.py from %s (see there for comments).\n"
                    % os.path.relpath(opts.config, SOURCE))
            json.dump(cfg, f, indent=2, ensure_ascii=False)
            f.write("\n")

        orders = http_json(wdt_url + "/admin/orders")["orders"]
        eligible = http_json(wdt_url + "/admin/orders?eligible=1")["orders"]
        invalid = {o["stockin_no"]: o.get("remark", "")[4:] for o in eligible
                   if str(o.get("remark", "")).startswith("BAD:")}

        notify = Notify(tmp)
        daemon = Proc("wdt2jdyd", [bins["wdt2jdyd"], "-c", cfg_path],
                      os.path.join(tmp, "wdt2jdyd.stderr"), notify)
        procs.append(daemon)
        say("demo: wdt2jdyd -c %s (pid %d)" % (cfg_path, daemon.proc.pid))
        if not notify.wait_ready(daemon, 30.0) and stop_signal is None:
            fail("wdt2jdyd did not become ready; its output ends with:\n%s" % daemon.tail())
            return 1

        t0 = time.monotonic()
        settled = False
        bills = dead = busy = 0
        while stop_signal is None:
            if not daemon.alive():
                fail("wdt2jdyd exited with %s; its output ends with:\n%s"
                     % (daemon.proc.returncode, daemon.tail()))
                break
            st = ctl_state(bins, cfg_path)
            try:
                bills = http_json(jdy_url + "/admin/stats")["bills"]
            except (OSError, ValueError, KeyError):
                pass
            q = st.get("queue", {})
            busy = q.get("ready", 0) + q.get("delayed", 0) + q.get("in_flight", 0)
            dead = st.get("dead", 0)
            cur = st.get("cursors", {}).get(flow, {}).get("cursor")
            say("bills %d/%d  dead %d  queue %d  cursor %s" % (
                bills, len(eligible), dead, busy,
                wdt_time(cur, offset) if isinstance(cur, int) else "(not started)"))
            if st and busy == 0 and bills + dead >= len(eligible):
                settled = True
                break
            if time.monotonic() - t0 > opts.timeout:
                fail("not settled after %ds" % opts.timeout)
                break
            step_end = time.monotonic() + 1.0
            while stop_signal is None and time.monotonic() < step_end:
                time.sleep(0.05)
        elapsed = time.monotonic() - t0
        if stop_signal is not None:
            say("demo: interrupted; stopping")
            return 130

        ok = settled
        # Final counts, read while everything still runs.
        all_bills = http_json(jdy_url + "/admin/bills")["bills"]
        markers = {}
        for b in all_bills:
            markers[b.get("remark")] = markers.get(b.get("remark"), 0) + 1
        dups = sum(1 for n in markers.values() if n > 1)
        jstats = http_json(jdy_url + "/admin/stats")
        wstats = http_json(wdt_url + "/admin/stats")
        dl = dead_letters(bins, cfg_path, flow)

        say()
        say("finished in %.1fs" % elapsed if settled else "stopped after %.1fs" % elapsed)
        say("orders at WDT   %d" % len(orders))
        say("eligible        %d (order_type 4, status 80; %d of them invalid on purpose)"
            % (len(eligible), len(invalid)))
        say("bills saved     %d (distinct markers %d, duplicates %d)"
            % (len(all_bills), len(markers), dups))
        if dl is None:
            fail("wdt2jdyctl dlq list failed")
            ok = False
            dl = []
        kinds = {}
        for kind in invalid.values():
            kinds[kind] = kinds.get(kind, 0) + 1
        say("dead letters    %d (invalid at WDT: %s)" % (len(dl), ", ".join(
            "%s %d" % kv for kv in sorted(kinds.items())) or "none"))
        for no, reason in dl[:MAX_SHOWN]:
            say("  %-16s %-16s %s" % (no, invalid.get(no, "-"), reason))
        if len(dl) > MAX_SHOWN:
            say("  ... and %d more (wdt2jdyctl dlq list)" % (len(dl) - MAX_SHOWN))
        jcalls = jstats.get("calls", {})
        say("API calls       WDT %d, Kingdee %d; at most %d and %d in any 60s (quotas %d/min "
            "and %d/min); rate-limited answers %d" % (
                wstats.get("accepted_calls", 0),
                sum(jcalls.values()) if isinstance(jcalls, dict) else 0,
                wstats.get("max_calls_in_any_60s", 0), jstats.get("max_calls_in_any_60s", 0),
                per_minute(cfg["wdt"]["rate_limit"]), per_minute(cfg["kingdee"]["rate_limit"]),
                wstats.get("rate_limited", 0) + jstats.get("rate_limited", 0)))

        # Consistency: every eligible order is exactly one bill or one dead letter, and the
        # dead letters are exactly the invalid orders.
        want = {"WDT:" + o["stockin_no"] for o in eligible}
        dead_nos = {no for no, _ in dl}
        consistent = (len(markers) + len(dl) == len(eligible) and dups == 0
                      and set(markers) <= want and dead_nos == set(invalid)
                      and not any("WDT:" + no in markers for no in dead_nos))
        say("consistent      %s (bills + dead letters = eligible: %d + %d = %d)"
            % ("yes" if consistent else "NO", len(markers), len(dl), len(eligible)))
        ok = ok and consistent
        return 0 if ok else 1
    finally:
        rcs = []
        for p in reversed(procs):
            rcs.append("%s exit %s" % (p.name, p.stop()))
        if procs:
            say("stopped: " + ", ".join(rcs))
        bad = [p for p in procs if p.rc != 0]
        for p in bad:
            fail("%s exited with %s; its output ends with:\n%s" % (p.name, p.rc, p.tail()))
        unclean_stops.extend(p.name for p in bad)
        if notify:
            notify.close()


def main():
    ap = argparse.ArgumentParser(description="Run wdt2jdyd against the bundled fake servers.")
    ap.add_argument("--build", help="build directory (default: the first of %s that holds "
                    "the built programs)" % ", ".join(DEFAULT_BUILDS))
    ap.add_argument("--orders", type=int, default=500, help="orders at the fake WDT [500]")
    ap.add_argument("--days", type=int, default=3, help="days of backlog [3]")
    ap.add_argument("--bad-pct", type=int, default=3,
                    help="share of the eligible orders made invalid [3]")
    ap.add_argument("--seed", type=int, default=1, help="seed of the fakes' data [1]")
    ap.add_argument("--timeout", type=int, default=120,
                    help="seconds to wait for the backlog to settle [120]")
    ap.add_argument("--config", default=os.path.join(SOURCE, "etc", "demo.json"),
                    help="config template [etc/demo.json]")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (config, state, logs)")
    opts = ap.parse_args()
    if opts.orders < 1 or opts.days < 1 or not 0 <= opts.bad_pct <= 100:
        ap.error("--orders and --days must be at least 1, --bad-pct within 0..100")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    bins = programs(opts.build)
    if not bins:
        return 1
    tmp = tempfile.mkdtemp(prefix="wdt2jdy-demo-")
    rc = 1
    try:
        rc = run(opts, bins, tmp)
    except KeyboardInterrupt:
        say("demo: interrupted")
        rc = 130
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        fail(str(e))
    finally:
        if opts.keep:
            say("demo: kept %s (config, state, logs); look at it with\n  %s -c %s status"
                % (tmp, bins["wdt2jdyctl"], os.path.join(tmp, "wdt2jdy.json")))
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if rc == 0 and unclean_stops:
        rc = 1
    return 130 if stop_signal is not None else rc


if __name__ == "__main__":
    sys.exit(main())
