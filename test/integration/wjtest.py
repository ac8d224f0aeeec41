"""Helpers for the integration tests: temporary state, configs, the daemon process.

Only Python's standard library. Paths of the built programs come from the environment that
meson sets (WJ_DAEMON, WJ_CTL, WJ_BUILD_ROOT, WJ_SOURCE_ROOT)."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

DAEMON = os.environ.get("WJ_DAEMON", "build/daemon/wdt2jdyd")
CTL = os.environ.get("WJ_CTL", "build/daemon/wdt2jdyctl")
BUILD = os.environ.get("WJ_BUILD_ROOT", "build")
SOURCE = os.environ.get("WJ_SOURCE_ROOT", ".")

sys.path.insert(0, os.path.join(SOURCE, "test", "fake"))

failures = 0


def check(cond, what):
    """Record one assertion; print it like a TAP line."""
    global failures
    if cond:
        print("ok - " + what, flush=True)
    else:
        failures += 1
        print("not ok - " + what, flush=True)
    return cond


def finish():
    if failures:
        print("%d checks failed" % failures)
        sys.exit(1)
    print("all checks passed")
    sys.exit(0)


def wait_for(pred, timeout=20.0, step=0.05):
    """Poll pred() until it returns a true value or timeout seconds pass."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            return v
        time.sleep(step)


def base_config(tmp, wdt_url="http://127.0.0.1:9/router/qm", jdy_url="http://127.0.0.1:9",
                **over):
    """A complete config dict pointing at tmp for state and log."""
    cfg = {
        "state_dir": os.path.join(tmp, "state"),
        "log": {"file": os.path.join(tmp, "wdt2jdy.log"), "level": "info"},
        "status": {"file": os.path.join(tmp, "status.json"), "interval": "1s"},
        "timezone": "+08:00",
        "allow_insecure_http": True,  # the fakes speak plain HTTP on loopback
        "wdt": {"api": "qimen", "url": wdt_url, "sid": "test-sid", "app_key": "test-key",
                "app_secret": "test-secret", "rate_limit": "600/min", "concurrency": 2,
                "timeout": "5s"},
        "kingdee": {"api": "v1", "url": jdy_url, "client_id": "test-client",
                    "client_secret": "test-client-secret", "outer_instance_id": "test-instance",
                    "rate_limit": "6000/min", "concurrency": 8, "timeout": "5s"},
        "queue": {"capacity": 10000, "max_attempts": 12,
                  "backoff": {"initial": "200ms", "max": "5s"}},
        "flows": [{"name": "pd-gain", "priority": 1,
                   "source": {"method": "wdt.stockin.order.query",
                              "params": {"order_type": "4", "status": "80"}},
                   "cursor": {"start": "2026-08-01 00:00:00", "window": "1d", "lag": "1m",
                              "overlap": "5m", "interval": "2s"},
                   "mapping": "default"}],
    }
    for k, v in over.items():
        cfg[k] = v
    return cfg


def write_config(path, cfg, comment=None):
    with open(path, "w") as f:
        if comment:
            f.write("// %s\n" % comment)
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")


class Daemon:
    """The real wdt2jdyd binary run on a config file."""

    def __init__(self, config_path, env=None):
        self.config = config_path
        self.env = dict(os.environ)
        if env:
            self.env.update(env)
        self.proc = None

    def start(self):
        self.stderr = open(self.config + ".stderr", "ab")
        self.proc = subprocess.Popen([DAEMON, "-c", self.config], env=self.env,
                                     stdout=self.stderr, stderr=self.stderr)
        return self

    def signal(self, sig):
        self.proc.send_signal(sig)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.stderr.close()
        if rc != 0:
            print("daemon exited %s; its stderr ends with:\n%s" % (rc, read(self.config + ".stderr")[-3000:]))
        return rc

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.stderr.close()


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def ctl(config, *args, check_rc=None):
    p = subprocess.run([CTL, "-c", config] + list(args), capture_output=True, text=True,
                       timeout=120)
    if check_rc is not None and p.returncode != check_rc:
        print("ctl %s: rc %d\n%s%s" % (args, p.returncode, p.stdout, p.stderr))
    return p


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []
        # Read continuously, as systemd does: a datagram socket's queue is short.
        self.lock = threading.Lock()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        while True:
            try:
                m = self.sock.recv(4096).decode()
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return
            with self.lock:
                self.messages.append(m)

    def drain(self):
        with self.lock:
            return list(self.messages)

    def seen(self, text):
        return any(text in m for m in self.drain())


def tempdir():
    return tempfile.mkdtemp(prefix="wj-it-")


# ---- end-to-end stacks: fake WDT + fake Kingdee + the daemon ------------------------------

def fake_jdy_binary():
    return os.environ.get("WJ_FAKE_JDY", os.path.join(BUILD, "test", "fake", "fake_jdy"))


class Stack:
    """Both fakes and a daemon on one temporary state directory."""

    def __init__(self, wdt_args=(), jdy_args=(), api="qimen", kingdee_api="v1", tmp=None,
                 **cfg_over):
        import wjfake
        import wjfake_jdy
        self.tmp = tmp or tempdir()
        self.wdt = wjfake.start_wdt(*wdt_args)
        self.jdy = wjfake_jdy.FakeJdy(fake_jdy_binary(), list(jdy_args))
        wdt_url = self.wdt.url + ("/router/qm" if api == "qimen" else "/openapi2/")
        self.cfg = base_config(self.tmp, wdt_url=wdt_url, jdy_url=self.jdy.url)
        self.cfg["wdt"]["api"] = api
        self.cfg["kingdee"]["api"] = kingdee_api
        for path, value in cfg_over.items():
            node = self.cfg
            keys = path.split("__")
            for k in keys[:-1]:
                node = node[int(k)] if isinstance(node, list) else node[k]
            node[keys[-1]] = value
        self.cfg_path = os.path.join(self.tmp, "wdt2jdy.json")
        self.write()
        self.daemon = None
        self.log = os.path.join(self.tmp, "wdt2jdy.log")
        self.status_path = os.path.join(self.tmp, "status.json")

    def write(self):
        write_config(self.cfg_path, self.cfg)

    def start(self):
        self.daemon = Daemon(self.cfg_path).start()
        return self

    def status(self):
        return read_json(self.status_path) or {}

    def eligible(self):
        return self.wdt.admin_get("/admin/orders?eligible=1")["orders"]

    def bills(self):
        return self.jdy.admin_get("/admin/bills")["bills"]

    def jdy_stats(self):
        return self.jdy.admin_get("/admin/stats")

    def state(self):
        """wdt2jdyctl status --json: counts straight from LMDB."""
        p = ctl(self.cfg_path, "status", "--json")
        try:
            return json.loads(p.stdout)
        except ValueError:
            return {}

    def settled(self, expect_bills, expect_dead=0):
        """True when the fake holds expect_bills bills and the queue is empty."""
        st = self.state()
        q = st.get("queue", {})
        busy = q.get("ready", 1) + q.get("delayed", 1) + q.get("in_flight", 1)
        return (busy == 0 and st.get("dead", -1) == expect_dead
                and len(self.bills()) >= expect_bills)

    def close(self):
        rc = None
        if self.daemon and self.daemon.alive():
            rc = self.daemon.stop()
        for f in (self.wdt, self.jdy):
            try:
                f.stop()
            except Exception:
                pass
        return rc


def remark_counts(bills):
    counts = {}
    for b in bills:
        counts[b.get("remark")] = counts.get(b.get("remark"), 0) + 1
    return counts


def rss_kb(pid, field="VmRSS"):
    """A memory figure of /proc/PID/status in kB (VmRSS; "RssAnon" leaves out file-backed
    pages such as LMDB's map, which grow with the data, not with the daemon's memory)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0
