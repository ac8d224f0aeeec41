"""Helpers for tests that run the fake WDT server (test/fake/fake_wdt).

Standard library only. Typical use:

    from wjfake import start_wdt, qimen_call
    with start_wdt("--orders", "50", "--seed", "3") as fake:
        status, body = qimen_call(fake.url, {"start_time": ..., "end_time": ...})
        orders = fake.admin_get("/admin/orders")["orders"]

The binary is found from the argument, else $WJ_FAKE_WDT, else
$WJ_BUILD_ROOT/test/fake/fake_wdt.
"""

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

# Defaults of the fake (and of its README).
SID = "test-sid"
APP_KEY = "test-key"
APP_SECRET = "test-secret"
TARGET_APP_KEY = "21363512"
TZ_OFFSET = 8 * 3600
QIMEN_METHOD = "wdt.stockin.order.query"
QIMEN_PATH = "/router/qm"
OPENAPI2_PATH = "/openapi2/stockin_order_query.php"


def qimen_sign(params, secret):
    """Qimen signature: keys sorted by byte order, key+value concatenated, wrapped in the
    secret, MD5, uppercase hex. `sign` and empty values are left out."""
    items = sorted(((k, v) for k, v in params.items() if k != "sign" and v != ""),
                   key=lambda kv: kv[0].encode("utf-8"))
    text = secret + "".join(k + v for k, v in items) + secret
    return hashlib.md5(text.encode("utf-8")).hexdigest().upper()


def openapi2_pack(params):
    """openapi2 packed string: "LL-key:VVVV-value" pairs (lengths in code points) joined by ';'."""
    items = sorted(((k, v) for k, v in params.items() if k != "sign"),
                   key=lambda kv: kv[0].encode("utf-8"))
    return ";".join("%02d-%s:%04d-%s" % (len(k), k, len(v), v) for k, v in items)


def openapi2_sign(params, secret):
    """openapi2 signature: the packed string followed by the secret, MD5, lowercase hex."""
    return hashlib.md5((openapi2_pack(params) + secret).encode("utf-8")).hexdigest()


def wdt_time(epoch, tz_offset=TZ_OFFSET):
    """Epoch seconds as "YYYY-MM-DD HH:MM:SS" in a fixed UTC offset."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch + tz_offset))


def parse_wdt_time(text, tz_offset=TZ_OFFSET):
    """"YYYY-MM-DD HH:MM:SS" read in a fixed UTC offset → epoch seconds."""
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")) - tz_offset


def _post(url, data, timeout):
    """POST form data; returns (HTTP status, raw body bytes)."""
    body = urllib.parse.urlencode(data).encode("ascii")
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def qimen_params(business, app_key=APP_KEY, secret=APP_SECRET, sid=SID,
                 target_app_key=TARGET_APP_KEY, timestamp=None, method=QIMEN_METHOD):
    """Signed Qimen parameters for a query (business: dict of str → str)."""
    p = {"method": method, "app_key": app_key, "target_app_key": target_app_key, "sid": sid,
         "timestamp": timestamp or wdt_time(time.time()), "format": "json", "v": "2.0",
         "sign_method": "md5"}
    p.update(business)
    p["sign"] = qimen_sign(p, secret)
    return p


def openapi2_params(business, app_key=APP_KEY, secret=APP_SECRET, sid=SID, timestamp=None):
    """Signed openapi2 parameters for a query."""
    p = {"sid": sid, "appkey": app_key,
         "timestamp": str(int(time.time()) if timestamp is None else timestamp)}
    p.update(business)
    p["sign"] = openapi2_sign(p, secret)
    return p


def qimen_call(base_url, business, timeout=10, raw=False, **kw):
    """Signed Qimen query. Returns (status, parsed JSON) or (status, bytes) when raw."""
    status, body = _post(base_url + QIMEN_PATH, qimen_params(business, **kw), timeout)
    return status, body if raw else json.loads(body)


def openapi2_call(base_url, business, timeout=10, raw=False, **kw):
    """Signed openapi2 query. Returns (status, parsed JSON) or (status, bytes) when raw."""
    status, body = _post(base_url + OPENAPI2_PATH, openapi2_params(business, **kw), timeout)
    return status, body if raw else json.loads(body)


class Fake:
    """A running fake server. Use as a context manager or call stop()."""

    def __init__(self, proc, port, tmpdir):
        self.proc = proc
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self._tmpdir = tmpdir

    def admin_get(self, path, timeout=30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            return json.loads(r.read())

    def admin_post(self, path, obj, timeout=30):
        req = urllib.request.Request(self.url + path, data=json.dumps(obj).encode("utf-8"),
                                     method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())

    def stop(self, timeout=10):
        """SIGTERM, wait; returns the exit status (kills it if it does not stop in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._tmpdir:
            self._tmpdir.cleanup()
            self._tmpdir = None
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_fake(binary, *args, timeout=20, stderr=None):
    """Start a fake server binary on a free loopback port and wait for its port file."""
    tmpdir = tempfile.TemporaryDirectory(prefix="wjfake-")
    port_file = os.path.join(tmpdir.name, "port")
    proc = subprocess.Popen([binary, "--port", "0", "--port-file", port_file] + list(args),
                            stdin=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tmpdir.cleanup()
            raise RuntimeError("%s exited with %d" % (binary, proc.returncode))
        try:
            with open(port_file) as f:
                text = f.read()
            if text.endswith("\n"):
                return Fake(proc, int(text), tmpdir)
        except FileNotFoundError:
            pass
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    tmpdir.cleanup()
    raise RuntimeError("%s did not write its port file in %ds" % (binary, timeout))


def wdt_binary(binary=None):
    if binary:
        return binary
    if os.environ.get("WJ_FAKE_WDT"):
        return os.environ["WJ_FAKE_WDT"]
    return os.path.join(os.environ.get("WJ_BUILD_ROOT", "build"), "test", "fake", "fake_wdt")


def start_wdt(*args, binary=None, **kw):
    """Start the fake WDT server with extra flags (e.g. "--orders", "100")."""
    return start_fake(wdt_binary(binary), *args, **kw)
