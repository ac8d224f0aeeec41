"""The HTML report in a real browser: the daemon runs against the fakes (some orders saved, some
parked, one with markup in its number), writes status.html_file, and wdt2jdyctl report --html
writes the page from the state. Debian's headless Chromium renders both through chromedriver
(WebDriver is HTTP + JSON: urllib suffices); the screenshot is not blank, the console has no
error, and the SVG read back from the rendered page matches the counts: every bar's height is
its count × the chart's scale, the bills drawn are the bills at the fake Kingdee, the dead
letters listed are `dlq list`'s. The page holds no script, no address and no secret.

Skipped (exit 77) when /usr/bin/chromium or /usr/bin/chromedriver is missing."""

import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

from wjtest import BUILD, CTL, check, ctl, finish, read, wait_for
from e2e import close_stack, derived_order, e2e_stack, wait_settled

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    print("1..0 # SKIP needs %s and %s (Debian packages chromium and chromium-driver)"
          % (CHROMIUM, CHROMEDRIVER))
    sys.exit(77)

# The bars are read back from the page as the browser parsed it.
READ_BACK = """
return Array.from(document.querySelectorAll('svg.chart')).map(function (svg) {
  var sec = svg.closest('section.flow');
  return {cls: svg.getAttribute('class'), scale: parseFloat(svg.dataset.scale),
    flow: sec ? sec.dataset.flow : null,
    limit: Array.from(svg.querySelectorAll('line.limit')).map(function (l) {
      return parseFloat(l.dataset.limit); }),
    hours: Array.from(svg.querySelectorAll('g.hour')).map(function (g) {
      return {hour: g.dataset.hour, saved: g.dataset.saved, dead: g.dataset.dead,
        peak: g.dataset.peak,
        rects: Array.from(g.querySelectorAll('rect')).map(function (r) {
          return {cls: r.getAttribute('class'), count: parseInt(r.dataset.count, 10),
                  height: parseFloat(r.getAttribute('height')),
                  drawn: r.getBBox().height}; })}; })};
}).concat([{dead: Array.from(document.querySelectorAll('.dlq-order')).map(function (e) {
    return e.dataset.stockinNo; }),
  groups: Array.from(document.querySelectorAll('tr.dlq-group')).map(function (e) {
    return parseInt(e.dataset.count, 10); }),
  health: document.querySelector('[data-health]').dataset.health,
  text: document.body.innerText}]);
"""


# ---- WebDriver over plain HTTP -----------------------------------------------------------

class Driver:
    def __init__(self, tmp):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        env = dict(os.environ, HOME=tmp)
        self.log = open(os.path.join(tmp, "chromedriver.log"), "wb")
        self.proc = subprocess.Popen([CHROMEDRIVER, "--port=%d" % self.port], env=env,
                                     stdout=self.log, stderr=self.log)
        self.base = "http://127.0.0.1:%d" % self.port
        ready = wait_for(lambda: self._ready(), timeout=30, step=0.2)
        if not ready:
            raise RuntimeError("chromedriver did not start")
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,1800",
                "--user-data-dir=" + os.path.join(tmp, "chromium"), "--lang=zh-CN"]},
            "goog:loggingPrefs": {"browser": "ALL"}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def _ready(self):
        try:
            return self.call("GET", "/status").get("ready")
        except (OSError, ValueError):
            return False

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError("%s %s: %s" % (method, path, e.read()[:500]))

    def s(self, method, path, body=None):
        return self.call(method, "/session/%s%s" % (self.session, path), body)

    def open(self, path):
        self.s("POST", "/url", {"url": "file://" + path})

    def screenshot(self):
        return base64.b64decode(self.s("GET", "/screenshot"))

    def browser_log(self):
        for path in ("/se/log", "/log"):
            try:
                return self.s("POST", path, {"type": "browser"})
            except RuntimeError:
                continue
        raise RuntimeError("chromedriver gives no browser log")

    def run(self, script):
        return self.s("POST", "/execute/sync", {"script": script, "args": []})

    def close(self):
        try:
            self.s("DELETE", "")
        except (RuntimeError, OSError):
            pass
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ---- PNG, with zlib from the standard library --------------------------------------------

def png_pixels(png):
    """(width, height, set of distinct colours, share of pixels not white)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(png):
        n, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", data[:10])
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
    assert depth == 8 and ctype in (2, 6), "8-bit RGB(A) expected"
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    colours, ink = set(), 0
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 255
        for x in range(0, stride, bpp * 3):  # every third pixel is plenty
            px = bytes(line[x:x + 3])
            colours.add(px)
            if px != b"\xff\xff\xff":
                ink += 1
        prev = line
    return w, h, colours, ink / float(h * ((w + 2) // 3))


# ---- checks of one page ------------------------------------------------------------------

def page_checks(drv, path, what, bills, dead, secrets, shot=None):
    """Render path; check it as rendered and as text. Returns the data read back."""
    html = read(path)
    check(len(html) > 1000, "%s: written (%d bytes)" % (what, len(html)))
    low = html.lower()
    check("<script" not in low, "%s: no <script" % what)
    check("http://" not in low and "https://" not in low, "%s: no http:// or https://" % what)
    check("src=" not in low and "href=" not in low and "url(" not in low and "@import" not in low,
          "%s: refers to nothing outside itself" % what)
    leaked = [s for s in secrets if s in html]
    check(not leaked, "%s: no secret of the configuration in it (%s)" % (what, leaked))
    check("&lt;script&gt;" in html, "%s: the order number with markup is shown escaped" % what)
    drv.open(path)
    png = drv.screenshot()
    if shot:
        with open(shot, "wb") as f:
            f.write(png)
    w, h, colours, ink = png_pixels(png)
    check(w >= 800 and h >= 600, "%s: screenshot %dx%d" % (what, w, h))
    check(len(colours) >= 20 and ink > 0.02,
          "%s: screenshot not blank (%d colours, %.1f%% ink)" % (what, len(colours), ink * 100))
    log = drv.browser_log()
    bad = [e for e in log if e.get("level") in ("SEVERE", "WARNING")]
    check(not bad, "%s: no console error or warning (%s)" % (what, bad[:3]))
    data = drv.run(READ_BACK)
    charts, page = data[:-1], data[-1]
    check(len(charts) >= 4, "%s: bills, lag and two quota charts (%d)" % (what, len(charts)))
    wrong = []
    for c in charts:
        for hr in c["hours"]:
            for r in hr["rects"]:
                want = r["count"] * c["scale"]
                if abs(r["height"] - want) > 0.0006 or abs(r["drawn"] - r["height"]) > 0.01:
                    wrong.append((c["cls"], hr["hour"], r))
            for r in hr["rects"]:
                kind = r["cls"].split()[0]
                attr = {"saved": "saved", "dead": "dead", "peak": "peak"}[kind]
                if int(hr[attr]) != r["count"]:
                    wrong.append((c["cls"], hr["hour"], "count", r))
    check(not wrong, "%s: every bar's height = count x scale, drawn so (%s)" % (what, wrong[:3]))
    b = [c for c in charts if c["cls"] == "chart bills"][0]
    saved = sum(int(hr["saved"]) for hr in b["hours"])
    shown_dead = sum(int(hr["dead"]) for hr in b["hours"])
    per_flow = {}
    for c in charts:
        if c["cls"] == "chart bills flow":
            per_flow[c["flow"]] = (sum(int(hr["saved"]) for hr in c["hours"]),
                                   sum(int(hr["dead"]) for hr in c["hours"]))
    q = [c for c in charts if c["cls"] == "chart quota"]
    check(len(q) == 2 and all(len(c["limit"]) == 1 and c["limit"][0] > 0 for c in q),
          "%s: each quota chart has its limit line" % what)
    total = sum(page["groups"])
    check(total == len(dead) and set(page["dead"]) <= set(dead)
          and len(page["dead"]) == min(total, sum(min(5, g) for g in page["groups"])),
          "%s: dead letters listed = dlq list (%d groups, %d orders of %d)"
          % (what, len(page["groups"]), total, len(dead)))
    return {"saved": saved, "dead": shown_dead, "health": page["health"], "text": page["text"],
            "charts": charts, "flows": per_flow}


def main():
    st = e2e_stack(30, span_days=2, seed=416, wdt_args=["--bad-pct", "20"],
                   kingdee__rate_limit="500/min")
    drv = None
    try:
        html_file = os.path.join(st.tmp, "live.html")
        st.cfg["status"]["html_file"] = html_file
        st.write()
        elig = st.eligible()
        tpl = next(o for o in elig if "BAD:" not in str(o.get("remark")))
        # parked (no usable quantity), with markup in its number
        odd = derived_order(tpl, 1, elig[0]["modified"], stockin_no="RK<script>x</script>&'1",
                            details_list=[dict(tpl["details_list"][0], goods_count="abc")])
        st.wdt.admin_post("/admin/orders", odd)
        expect = len(st.eligible())
        st.start()
        took, nb, nd = wait_settled(st, expect, timeout=120)
        check(took is not None and nb > 0 and nd > 1,
              "settled: %d bills, %d dead letters of %d orders" % (nb, nd, expect))
        secrets = collect_secrets(st.cfg)
        check(len(secrets) >= 2, "the configuration has secrets to look for (%d)" % len(secrets))

        tmp = os.path.join(st.tmp, "browser")
        os.makedirs(tmp)
        drv = Driver(tmp)

        # the daemon's page, while it runs
        ok = wait_for(lambda: "RK&lt;script&gt;" in read(html_file), timeout=30, step=0.3)
        check(ok, "status.html_file written by the daemon, with the dead letters")
        dead = [d["stockin_no"] for d in json.loads(
            ctl(st.cfg_path, "dlq", "list", "--json").stdout or "[]")]
        live = page_checks(drv, html_file, "daemon's page", nb, dead, secrets)
        check(live["health"] == "running", "daemon's page: health running (%s)" % live["health"])
        check("数据流" in live["text"], "daemon's page: in Chinese by default")

        # a reload takes up a changed html_file; one that cannot be written is said once
        moved = os.path.join(st.tmp, "moved.html")
        st.cfg["status"]["html_file"] = moved
        st.write()
        st.daemon.signal(signal.SIGHUP)
        check(wait_for(lambda: "RK&lt;script&gt;" in read(moved), timeout=30, step=0.3),
              "reload: the daemon writes the new html_file")
        st.cfg["status"]["html_file"] = os.path.join(st.tmp, "no-such-dir", "r.html")
        st.write()
        st.daemon.signal(signal.SIGHUP)
        said = "cannot write the HTML report"
        check(wait_for(lambda: said in read(st.log), timeout=30, step=0.3),
              "an html_file that cannot be written is logged")
        seen = st.status().get("updated", 0)
        wait_for(lambda: st.status().get("updated", 0) >= seen + 3, timeout=30, step=0.3)
        check(read(st.log).count(said) == 1 and st.daemon.alive()
              and st.status().get("state") == "running",
              "logged once over 3 more status writes, the daemon runs on (%d lines)"
              % read(st.log).count(said))
        st.cfg["status"]["html_file"] = html_file
        st.write()
        st.daemon.signal(signal.SIGHUP)

        # a restart in between adds no spike: the counts are baselined at start
        check(st.daemon.stop() == 0, "daemon exits 0")
        st.start()
        wait_for(lambda: st.status().get("state") == "running" and "RK&lt;" in read(html_file),
                 timeout=30, step=0.3)
        check(st.daemon.stop() == 0, "daemon exits 0 again")
        bills = len(st.bills())

        out = os.path.join(st.tmp, "report.html")
        p = ctl(st.cfg_path, "report", "--html", out, "--days", "1", "--lang", "en")
        check(p.returncode == 0, "report --html exits 0 (%s)" % p.stderr.strip())
        shot = os.path.join(BUILD, "report.png")
        r = page_checks(drv, out, "report --lang en", bills, dead, secrets, shot=shot)
        check(r["saved"] == bills, "bills drawn = bills at the fake Kingdee (%d, %d)"
              % (r["saved"], bills))
        check(r["dead"] == len(dead), "dead letters drawn = dlq list (%d, %d)"
              % (r["dead"], len(dead)))
        flow = st.cfg["flows"][0]["name"]
        check(r["flows"].get(flow) == (bills, len(dead)),
              "flow %s's own chart: its bills and dead letters (%s; %d, %d)"
              % (flow, r["flows"].get(flow), bills, len(dead)))
        q = [c for c in r["charts"] if c["cls"] == "chart quota"]
        check(any(int(hr["peak"]) > 0 for hr in q[1]["hours"]),
              "the Kingdee quota chart shows the calls")
        check(r["health"] == "stopped", "report after the stop: health stopped (%s)" % r["health"])
        check("Flows" in r["text"] and "数据流" not in r["text"], "--lang en: in English")
        if os.environ.get("WJ_REPORT_PNG"):
            shutil.copy(shot, os.environ["WJ_REPORT_PNG"])

        zh = os.path.join(st.tmp, "report-zh.html")
        p = subprocess.run([CTL, "--state-dir",
                            st.cfg["state_dir"], "report", "--html", zh, "--days", "14"],
                           capture_output=True, text=True, timeout=120)
        check(p.returncode == 0 and "数据流" in read(zh),
              "report --state-dir without the configuration: Chinese, 14 days (%s)"
              % p.stderr.strip())
        for bad, name in ((["--days", "15"], "--days"), (["--days", "x"], "--days"),
                          (["--lang", "fr"], "--lang"), ([], "--html")):
            p = ctl(st.cfg_path, "report", *(bad + ([] if name == "--html" else
                                                    ["--html", out])))
            check(p.returncode == 1 and name in p.stderr,
                  "report %s: refused naming %s (%s)" % (" ".join(bad), name, p.stderr.strip()))
        err = read(st.cfg_path + ".stderr")
        check("runtime error:" not in err and "Sanitizer" not in err,
              "no sanitizer report from the daemon")
    finally:
        if drv:
            drv.close()
        close_stack(st)


def collect_secrets(cfg):
    """Every value of a key that names a secret, password or token."""
    out = []
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            if isinstance(v, str) and any(w in k for w in ("secret", "password", "token")) \
                    and len(v) >= 4:
                out.append(v)
            else:
                out += collect_secrets(v)
    elif isinstance(cfg, list):
        for v in cfg:
            out += collect_secrets(v)
    return out


def many_dead():
    """More dead letters than the page groups (2,000; each is parsed whole): the page still
    says how many there are, groups the first 2,000 and says so."""
    st = e2e_stack(2100, span_days=1, seed=417,
                   wdt_args=["--eligible-pct", "100", "--bad-pct", "100"])
    try:
        st.start()
        took, nb, nd = wait_settled(st, 2100, timeout=240)
        check(took is not None and nb == 0 and nd == 2100,
              "many dead: all 2100 orders parked (%d bills, %d dead)" % (nb, nd))
        out = os.path.join(st.tmp, "many.html")
        p = ctl(st.cfg_path, "report", "--html", out, "--days", "1", "--lang", "en")
        html = read(out)
        m = re.search(r'data-dead-total="(\d+)"', html)
        grouped = sum(int(x) for x in re.findall(r'class="dlq-group" data-count="(\d+)"', html))
        check(p.returncode == 0 and m and int(m.group(1)) == nd,
              "many dead: the page counts every dead letter (%s of %d)"
              % (m and m.group(1), nd))
        check(grouped == 2000 and 'data-dead-grouped="2000"' in html,
              "many dead: the first 2000 grouped by reason, and said so (%d)" % grouped)
    finally:
        close_stack(st)


main()
many_dead()
finish()
