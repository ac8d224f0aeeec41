#!/usr/bin/env python3
"""Benchmark harness: the daemon against the fake servers on loopback.

    python3 test/bench/run.py --build BUILD_DIR [--quick] [--out DIR] [--only NAMES]

Writes DIR/results.json and DIR/results.md (default DIR: BUILD_DIR/bench). Every figure is the
median of the runs made (full: 3, --quick: 1 with smaller sizes). See test/bench/README.md.
Standard library only; reuses test/integration/wjtest.py and e2e.py."""

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))

FIGURES = ("throughput", "footprint", "latency", "quota", "paced")


def setup_env(build):
    """Point the integration helpers at BUILD's programs; must run before importing them."""
    build = os.path.abspath(build)
    for prog in ("daemon/wdt2jdyd", "daemon/wdt2jdyctl", "test/fake/fake_wdt",
                 "test/fake/fake_jdy", "test/bench/bench_floor"):
        if not os.access(os.path.join(build, prog), os.X_OK):
            sys.exit("run.py: %s/%s not built" % (build, prog))
    os.environ["WJ_BUILD_ROOT"] = build
    os.environ["WJ_SOURCE_ROOT"] = SOURCE
    os.environ["WJ_DAEMON"] = os.path.join(build, "daemon", "wdt2jdyd")
    os.environ["WJ_CTL"] = os.path.join(build, "daemon", "wdt2jdyctl")
    os.environ["WJ_FAKE_WDT"] = os.path.join(build, "test", "fake", "fake_wdt")
    os.environ["WJ_FAKE_JDY"] = os.path.join(build, "test", "fake", "fake_jdy")
    os.environ["WJ_BENCH_FLOOR"] = os.path.join(build, "test", "bench", "bench_floor")
    sys.path.insert(0, os.path.join(SOURCE, "test", "integration"))


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def percentile(xs, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


# ---- /proc sampling ------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid):
    """(VmRSS, RssAnon) in KiB, or None once the process is gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon"):
                    out[k] = int(v.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out.get("VmRSS", 0), out.get("RssAnon", 0)


def proc_cpu_s(pid):
    """utime + stime of pid in seconds."""
    u, s = proc_cpu_us(pid)
    return u + s


def proc_cpu_us(pid):
    """(utime, stime) of pid in seconds, apart."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


class Sampler:
    """Samples VmRSS and RssAnon of one process every 100 ms in a thread; keeps the peaks."""

    def __init__(self, pid, period=0.1):
        self.pid = pid
        self.period = period
        self.peak_rss = 0
        self.peak_anon = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            v = proc_status_kb(self.pid)
            if v is None:
                return
            self.peak_rss = max(self.peak_rss, v[0])
            self.peak_anon = max(self.peak_anon, v[1])
            self.samples += 1
            self._stop.wait(self.period)

    def stop(self):
        self._stop.set()
        self._t.join()


# ---- daemon runs ---------------------------------------------------------------------------

def wait_bills(st, expect, timeout, step=0.25):
    """Poll the fake Kingdee's bill count until it reaches expect; returns the monotonic time
    it was first seen there (None on timeout) and the last count."""
    end = time.monotonic() + timeout
    n = 0
    while time.monotonic() < end:
        n = st.jdy_stats()["bills"]
        if n >= expect:
            return time.monotonic(), n
        if not st.daemon.alive():
            break
        time.sleep(step)
    return None, n


def wait_drained(st, timeout, step=0.25):
    """Wait until the daemon's status says the backlog is done: flow caught up with now, queue
    empty, every stored order posted or dead. Returns (monotonic time or None, status)."""
    end = time.monotonic() + timeout
    s = {}
    while time.monotonic() < end:
        s = st.status()
        q = s.get("queue", {})
        fl = (s.get("flows") or [{}])[0]
        if (fl.get("lag_s", 1e9) <= 10 and q.get("depth", 1) == 0 and q.get("in_flight", 1) == 0
                and fl.get("stored", 0) > 0
                and s.get("posted", 0) + s.get("dead", 0) >= fl.get("stored", 1)):
            return time.monotonic(), s
        if not st.daemon.alive():
            break
        time.sleep(step)
    return None, s


def api_calls(st):
    """Kingdee calls (all endpoints but admin) and WDT calls so far, from the fakes' stats."""
    js = st.jdy_stats()
    jcalls = sum(v for k, v in js["calls"].items() if k != "admin")
    ws = st.wdt.admin_get("/admin/stats")
    return jcalls, ws["calls"], js


def daemon_run(st, expect, timeout, sample=True):
    """Start the daemon, wait until expect bills exist at the fake, stop it.
    Returns a dict of elapsed, bills, cpu seconds, peak RSS figures."""
    t0 = time.monotonic()
    st.start()
    pid = st.daemon.proc.pid
    smp = Sampler(pid) if sample else None
    if expect is None:
        t1, s = wait_drained(st, timeout)
        n = st.jdy_stats()["bills"]
    else:
        t1, n = wait_bills(st, expect, timeout)
    cpu = proc_cpu_s(pid) if st.daemon.alive() else None
    avg_save = st.status().get("queue", {}).get("avg_save_ms")
    if smp:
        smp.stop()
    rc = st.daemon.stop()
    if rc != 0:
        raise RuntimeError("daemon exited %s" % rc)
    if t1 is None:
        raise RuntimeError("backlog not drained in %ds (%d bills)" % (timeout, n))
    r = {"elapsed_s": t1 - t0, "bills": n, "cpu_s": cpu, "avg_save_ms": avg_save}
    if smp:
        r.update(peak_rss_kb=smp.peak_rss, peak_anon_kb=smp.peak_anon, samples=smp.samples)
    return r


# ---- ceiling: plain load generator ---------------------------------------------------------

def _ceiling_worker(args):
    port, token, domain, client_id, secret, path, bodies = args
    import wjfake_jdy
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ok = 0
    for body in bodies:
        h = wjfake_jdy.gateway_headers(client_id, secret, "POST", path, [])
        h["app-token"] = token
        h["X-GW-Router-Addr"] = domain
        h["Content-Type"] = "application/json"
        conn.request("POST", path, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status == 200 and b"success" in data:
            ok += 1
    conn.close()
    return ok


def ceiling(orders, concurrency):
    """POST the save bodies of orders to a fresh fake Kingdee with concurrency processes, each
    on one keep-alive connection. Returns (bills/s, saves accepted by the fake)."""
    import e2e
    import wjfake_jdy
    from wjtest import fake_jdy_binary
    bodies = [json.dumps(e2e.expected_body(o, "v1"), ensure_ascii=False).encode()
              for o in orders]
    f = wjfake_jdy.FakeJdy(fake_jdy_binary(), ["--rate-limit", "0"])
    try:
        c = f.client()
        c.login()
        path = "/jdy/inv/inv_check_gain_bill_save"
        chunks = [bodies[i::concurrency] for i in range(concurrency)]
        jobs = [(f.port, c.token, c.domain, c.client_id, c.client_secret, path, ch)
                for ch in chunks]
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(concurrency) as pool:
            t0 = time.monotonic()
            oks = pool.map(_ceiling_worker, jobs)
            dt = time.monotonic() - t0
        saved = f.admin_get("/admin/stats")["saves_ok"]
        if saved != len(bodies) or sum(oks) != len(bodies):
            raise RuntimeError("ceiling: %d of %d saves accepted" % (saved, len(bodies)))
        return len(bodies) / dt, saved
    finally:
        f.stop()


# ---- floor: the JSON work no daemon built on jansson can skip ---------------------------------

def json_floor(orders, sample=2000, page=100):
    """CPU ms per order for the daemon's own page parse, and for the canonical text + SHA-256
    it makes of each order, on the first sample orders served as WDT pages (bench_floor)."""
    import subprocess
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as f:
        part = orders[:sample]
        for i in range(0, len(part), page):
            f.write(json.dumps({"code": 0, "message": "", "total_count": len(part),
                                "stockin_list": part[i:i + page]}, ensure_ascii=False,
                               separators=(",", ":")) + "\n")
        f.flush()
        p = subprocess.run([os.environ["WJ_BENCH_FLOOR"], f.name], capture_output=True,
                           text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError("bench_floor: %s" % p.stderr.strip())
    return json.loads(p.stdout)


# ---- 1 + 3: throughput, ceiling, API efficiency -------------------------------------------

def warm_orders(templates, count, serial0):
    """count new orders copied from templates, modified spread over the hour that ended an
    hour ago (read long after they changed, like any backlog: no overlap to read again)."""
    import e2e
    import wjfake
    now = int(time.time())
    out = []
    for i in range(count):
        mod = wjfake.wdt_time(now - 7200 + (i * 3600) // max(count, 1))
        out.append(e2e.derived_order(templates[i % len(templates)], serial0 + i, mod))
    return out


def bench_throughput(orders, seed, concurrency, timeout):
    import e2e
    st = e2e.e2e_stack(orders, seed=seed, kingdee__concurrency=concurrency)
    try:
        elig = st.eligible()
        n = len(elig)
        log("throughput: %d orders, %d eligible (cold)" % (orders, n))
        floor = json_floor(elig)  # while nothing else runs: the fakes are idle until then
        log("  floor: parse %.3f ms, + canonical text and hash %.3f ms per order (%d bytes)" % (
            floor["parse_ms_per_order"], floor["prep_ms_per_order"], floor["bytes_per_order"]))
        j0, w0, _ = api_calls(st)
        fw0, fj0 = proc_cpu_s(st.wdt.proc.pid), proc_cpu_s(st.jdy.proc.pid)
        cold = daemon_run(st, n, timeout)
        fw1, fj1 = proc_cpu_s(st.wdt.proc.pid), proc_cpu_s(st.jdy.proc.pid)
        j1, w1, _ = api_calls(st)
        cold.update(bills_per_s=n / cold["elapsed_s"], kingdee_calls=j1 - j0, wdt_calls=w1 - w0,
                    cpu_ms_per_bill=1000.0 * cold["cpu_s"] / n,
                    fake_wdt_cpu_ms_per_bill=1000.0 * (fw1 - fw0) / n,
                    fake_jdy_cpu_ms_per_bill=1000.0 * (fj1 - fj0) / n)
        log("  cold: %.1f bills/s (%.1f s)" % (cold["bills_per_s"], cold["elapsed_s"]))
        # Warm: a second backlog of new orders at the same fakes, same state (cached lookups).
        new = warm_orders(elig, n, 1)
        for i in range(0, len(new), 5000):  # the fake takes at most 256 MiB per request
            st.wdt.admin_post("/admin/orders", {"orders": new[i:i + 5000]})
        # Move the stopped daemon's cursor to just before the new orders, as after a pause.
        import wjfake
        from wjtest import ctl
        p = ctl(st.cfg_path, "cursor", "set", "pd-gain", wjfake.wdt_time(int(time.time()) - 7230))
        if p.returncode != 0:
            raise RuntimeError("cursor set: %s" % p.stderr.strip())
        lookups0 = st.jdy_stats()["calls"]
        warm = daemon_run(st, 2 * n, timeout)
        j2, w2, js = api_calls(st)
        lk = sum(js["calls"][k] - lookups0[k] for k in ("material_detail", "store_detail",
                                                       "material_list"))
        warm.update(bills_per_s=n / warm["elapsed_s"], kingdee_calls=j2 - j1, wdt_calls=w2 - w1,
                    lookup_calls=lk, bills=js["bills"] - n)
        log("  warm: %.1f bills/s (%.1f s), kingdee calls %d, wdt calls %d, lookups %d" % (
            warm["bills_per_s"], warm["elapsed_s"], warm["kingdee_calls"], warm["wdt_calls"], lk))
        if js["duplicate_remarks"]:
            raise RuntimeError("duplicate bills: %d" % js["duplicate_remarks"])
    finally:
        e2e.close_stack(st)
    ceil, _ = ceiling(elig, concurrency)
    log("  ceiling: %.1f bills/s" % ceil)
    # Every order of the backlog is fetched and parsed, eligible or not.
    per_bill = orders / float(n)
    floor.update(parse_ms_per_bill=floor["parse_ms_per_order"] * per_bill,
                 prep_ms_per_bill=floor["prep_ms_per_order"] * per_bill)
    # What the machine's CPUs allow at best: the fakes' measured CPU per bill plus a daemon that
    # only parsed each order once; and the same if the fake WDT cost nothing.
    cpus = os.cpu_count() or 1
    fakes = cold["fake_wdt_cpu_ms_per_bill"] + cold["fake_jdy_cpu_ms_per_bill"]
    floor.update(
        bound_ratio=1000.0 * cpus / (fakes + floor["parse_ms_per_bill"]) / ceil,
        bound_ratio_free_wdt=1000.0 * cpus / (cold["fake_jdy_cpu_ms_per_bill"]
                                               + floor["parse_ms_per_bill"]) / ceil,
        daemon_ms_for_half=1000.0 * cpus / (0.5 * ceil) - fakes,
        daemon_ms_for_half_free_wdt=1000.0 * cpus / (0.5 * ceil)
        - cold["fake_jdy_cpu_ms_per_bill"])
    return {"orders": orders, "eligible": n, "cold": cold, "warm": warm,
            "ceiling_bills_per_s": ceil, "floor": floor,
            "ratio_cold": cold["bills_per_s"] / ceil, "ratio_warm": warm["bills_per_s"] / ceil,
            "kingdee_calls_per_bill_warm": warm["kingdee_calls"] / n,
            "wdt_calls_per_100_warm": 100.0 * warm["wdt_calls"] / n,
            "wdt_calls_per_100_cold": 100.0 * cold["wdt_calls"] / n}


# ---- 2: footprint --------------------------------------------------------------------------

def bench_footprint(orders, seed, concurrency, timeout):
    import e2e
    st = e2e.e2e_stack(orders, seed=seed, kingdee__concurrency=concurrency)
    try:
        log("footprint: %d orders" % orders)
        r = daemon_run(st, None, timeout)
        r["orders"] = orders
        r["cpu_s_per_1000"] = 1000.0 * r["cpu_s"] / r["bills"] if r["bills"] else None
        r["bills_per_s"] = r["bills"] / r["elapsed_s"]
        log("  %d bills in %.1f s, peak RSS %d KiB, RssAnon %d KiB, %.2f CPU s/1000" % (
            r["bills"], r["elapsed_s"], r["peak_rss_kb"], r["peak_anon_kb"], r["cpu_s_per_1000"]))
    finally:
        e2e.close_stack(st)
    return r


# ---- 4: latency ----------------------------------------------------------------------------

def bench_latency(rate, duration, seed):
    """Live fake WDT creating rate orders/s; daemon interval 5s, lag 2s. Bills are polled every
    200 ms (the fake keeps no creation time); latency = first seen - order's modified."""
    import e2e
    import wjfake
    st = e2e.e2e_stack(0, seed=seed, wdt_args=["--live-create", str(rate)],
                       flows__0__cursor__interval="5s", flows__0__cursor__lag="2s")
    seen = {}
    try:
        st.start()
        t_start = time.time()
        end = time.monotonic() + duration
        while time.monotonic() < end:
            now = time.time()
            for b in st.bills():
                seen.setdefault(b.get("remark"), now)
            time.sleep(max(0.0, 0.2 - (time.time() - now)))
        # Stop creating, then let the last orders arrive (interval + lag + margin).
        st.wdt.admin_post("/admin/faults", {"live_create": 0})
        stop_create = time.time()
        end = time.monotonic() + 12
        while time.monotonic() < end:
            now = time.time()
            for b in st.bills():
                seen.setdefault(b.get("remark"), now)
            time.sleep(max(0.0, 0.2 - (time.time() - now)))
        orders = st.eligible()
    finally:
        e2e.close_stack(st)
    lat = []
    missing = 0
    for o in orders:
        mod = wjfake.parse_wdt_time(o["modified"])
        # Skip the daemon's first 10 s (start-up, catching up from the cursor start).
        if mod < t_start + 10 or mod > stop_create:
            continue
        t = seen.get(e2e.marker(o))
        if t is None:
            missing += 1
            continue
        lat.append(t - mod)
    if not lat:
        raise RuntimeError("latency: no bills seen")
    r = {"samples": len(lat), "missing": missing, "p50_s": percentile(lat, 50),
         "p99_s": percentile(lat, 99), "max_s": max(lat)}
    log("latency: %d samples, p50 %.2f s, p99 %.2f s, missing %d" % (
        len(lat), r["p50_s"], r["p99_s"], missing))
    return r


# ---- 6: cost per bill (paced and unpaced steady state) --------------------------------------

def pinned(cpus):
    """Context for starting processes on the given CPUs (they inherit this process's affinity);
    a no-op when the machine has fewer CPUs than that or no affinity support."""
    import contextlib

    @contextlib.contextmanager
    def ctx():
        if not hasattr(os, "sched_setaffinity") or max(cpus) >= (os.cpu_count() or 1):
            yield False
            return
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cpus)
        try:
            yield True
        finally:
            os.sched_setaffinity(0, old)
    return ctx()


def steady_window(st, pid, first, last, timeout, step=0.05):
    """Samples taken when the fake Kingdee first holds first and then last bills: daemon utime
    and stime, and the daemon's own status (store commits and posted bills, one snapshot, so
    that the two agree). Returns the differences."""
    marks = []
    end = time.monotonic() + timeout
    for goal in (first, last):
        while True:
            if time.monotonic() > end or not st.daemon.alive():
                raise RuntimeError("bills did not reach %d in %ds" % (goal, timeout))
            n = st.jdy_stats()["bills"]
            if n >= goal:
                break
            time.sleep(step)
        u, s = proc_cpu_us(pid)
        t = time.monotonic()
        stt = {}
        # status.json is replaced every second: wait for a snapshot at or past this moment.
        while time.monotonic() < end:
            stt = st.status()
            if stt.get("posted", 0) >= goal:
                break
            time.sleep(step)
        marks.append((t, n, u, s, stt.get("store", {}).get("commits"), stt.get("posted", 0)))
    (t0, n0, u0, s0, c0, p0), (t1, n1, u1, s1, c1, p1) = marks
    bills = n1 - n0
    r = {"bills": bills, "seconds": t1 - t0, "bills_per_s": bills / (t1 - t0),
         "user_ms_per_bill": 1000.0 * (u1 - u0) / bills,
         "sys_ms_per_bill": 1000.0 * (s1 - s0) / bills}
    r["cpu_ms_per_bill"] = r["user_ms_per_bill"] + r["sys_ms_per_bill"]
    if c0 is not None and c1 is not None and p1 > p0:
        r["syncs_per_bill"] = (c1 - c0) / float(p1 - p0)
    return r


def bench_cost(orders, seed, concurrency, timeout, paced, pin):
    """One backlog drained by the daemon; the steady state is the stretch between 40 % and 90 %
    of the eligible orders saved (the cold lookups lie before it). paced: the fake Kingdee
    answers at most that many saves per second. pin: fakes on CPU 0, daemon on CPU 1."""
    import e2e
    jargs = ["--max-saves-per-sec", str(paced)] if paced else []
    every = set(range(os.cpu_count() or 1))
    with pinned({0} if pin else every) as fakes_pinned:
        st = e2e.e2e_stack(orders, seed=seed, jdy_args=jargs, kingdee__concurrency=concurrency)
    try:
        elig = st.eligible()
        n = len(elig)
        floor = None if paced else json_floor(elig)  # fakes idle, daemon not started yet
        log("cost: %d orders, %d eligible, %s%s" % (
            orders, n, "paced at %d saves/s" % paced if paced else "unpaced",
            ", pinned" if pin else ""))
        with pinned({1} if pin else every) as daemon_pinned:
            t0 = time.monotonic()
            st.start()
        pid = st.daemon.proc.pid
        smp = Sampler(pid)
        try:
            r = steady_window(st, pid, int(0.4 * n), int(0.9 * n), timeout)
            t1, _ = wait_bills(st, n, timeout)
            u, s = proc_cpu_us(pid)
        finally:
            smp.stop()
        rc = st.daemon.stop()
        if rc != 0:
            raise RuntimeError("daemon exited %s" % rc)
        if t1 is None:
            raise RuntimeError("backlog not drained in %ds" % timeout)
        js = st.jdy_stats()
        if js["duplicate_remarks"]:
            raise RuntimeError("duplicate bills: %d" % js["duplicate_remarks"])
        r.update(orders=orders, eligible=n, paced=paced, pinned=bool(pin and daemon_pinned
                                                                     and fakes_pinned),
                 whole_cpu_ms_per_bill=1000.0 * (u + s) / n, whole_s=t1 - t0,
                 peak_anon_kb=smp.peak_anon, peak_rss_kb=smp.peak_rss)
        if floor:
            fl = floor["prep_ms_per_order"] * orders / float(n)
            r.update(floor_ms_per_bill=fl, floor_ratio=r["cpu_ms_per_bill"] / fl)
        log("  steady: %.1f bills/s, CPU %.3f + %.3f ms per bill, %s syncs per bill, "
            "RssAnon %d KiB" % (r["bills_per_s"], r["user_ms_per_bill"], r["sys_ms_per_bill"],
                                fmt(r.get("syncs_per_bill"), 3), r["peak_anon_kb"]))
    finally:
        e2e.close_stack(st)
    return r


# ---- 5: quota adherence --------------------------------------------------------------------

def bench_quota(orders, seed, quota, minutes):
    import e2e
    st = e2e.e2e_stack(orders, seed=seed, jdy_args=["--rate-limit", str(quota)],
                       kingdee__rate_limit="%d/min" % quota)
    marks = {}
    try:
        st.jdy.admin_post("/admin/faults", {"rate_limit": quota})
        log("quota: %d orders, %d/min for %d min" % (orders, quota, minutes))
        st.start()
        t0 = time.monotonic()
        for m in range(1, minutes + 1):
            while time.monotonic() < t0 + 60 * m:
                time.sleep(0.2)
                if not st.daemon.alive():
                    raise RuntimeError("daemon died")
            s = st.jdy_stats()
            calls = sum(v for k, v in s["calls"].items() if k != "admin")
            marks[m] = (s["saves_ok"], s["rate_limited"], s["max_calls_in_any_60s"], calls)
            log("  minute %d: saves %d, rate_limited %d, max calls/60s %d, calls %d" % (
                (m,) + marks[m]))
        eligible = len(st.eligible())
    finally:
        e2e.close_stack(st)
    first = minutes - 2
    saves = (marks[minutes][0] - marks[first][0]) / 2.0
    r = {"orders": orders, "eligible": eligible, "quota_per_min": quota,
         "saves_per_min_2_3": saves, "pct_of_quota": 100.0 * saves / quota,
         "calls_per_min_2_3": (marks[minutes][3] - marks[first][3]) / 2.0,
         "saves_minute_3": marks[minutes][0] - marks[minutes - 1][0],
         "rate_limited_first_min": marks[1][1],
         "rate_limited_after_first_min": marks[minutes][1] - marks[1][1],
         "max_calls_in_any_60s": marks[minutes][2]}
    if marks[minutes][0] >= eligible:
        r["note"] = "backlog drained before the end: figure is a lower bound"
    return r


# ---- report --------------------------------------------------------------------------------

def machine_facts():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version()}


def fmt(v, nd=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "%.*f" % (nd, v)
    return str(v)


def med(runs, *keys):
    vals = []
    for r in runs:
        for k in keys:
            r = r.get(k) if isinstance(r, dict) else None
        vals.append(r)
    return median(vals)


def markdown(res):
    m = res["machine"]
    out = ["# wdt2jdy benchmark results", "",
           "Machine: %d CPU (%s), kernel %s. Mode: %s, %d run(s) per figure, medians shown. "
           "Build: `%s`." % (m["nproc"], m["cpu_model"], m["kernel"], res["mode"], res["runs"],
                             res["build"]), "",
           "| # | figure | value | target / note |", "| --- | --- | --- | --- |"]
    row = out.append
    t = res.get("throughput")
    if t:
        rs = t["runs"]
        n = rs[0]["eligible"]
        row("| 1 | throughput, cold cache (N = %d eligible of %d orders) | %s bills/s | end to end "
            "from daemon start to last bill, Kingdee concurrency %d |" % (
                n, rs[0]["orders"], fmt(med(rs, "cold", "bills_per_s")), t["concurrency"]))
        row("| 1 | throughput, warm cache (second run, N = %d new orders) | %s bills/s | "
            "materials and stores cached |" % (n, fmt(med(rs, "warm", "bills_per_s"))))
        row("| 1 | ceiling: load generator → fake save | %s bills/s | same bodies, %d keep-alive "
            "connections |" % (fmt(med(rs, "ceiling_bills_per_s")), t["concurrency"]))
        row("| 1 | mean save round trip: daemon (status avg_save_ms, warm) / load generator | "
            "%s / %s ms | load generator: concurrency / rate |" % (
                fmt(med(rs, "warm", "avg_save_ms")),
                fmt(1000.0 * t["concurrency"] / med(rs, "ceiling_bills_per_s"))))
        row("| 1 | CPU ms per bill, cold: daemon / fake WDT / fake Kingdee | %s / %s / %s | "
            "the three share the machine's %d CPUs |" % (
                fmt(med(rs, "cold", "cpu_ms_per_bill"), 2),
                fmt(med(rs, "cold", "fake_wdt_cpu_ms_per_bill"), 2),
                fmt(med(rs, "cold", "fake_jdy_cpu_ms_per_bill"), 2), res["machine"]["nproc"]))
        row("| 1 | ratio daemon / ceiling, cold | %s | target ≥ 0.5 |" % fmt(
            med(rs, "ratio_cold"), 2))
        row("| 1 | ratio daemon / ceiling, warm | %s | target ≥ 0.5 |" % fmt(
            med(rs, "ratio_warm"), 2))
        row("| 1 | JSON floor per order (%s bytes): page parse / + canonical text and SHA-256 | "
            "%s / %s CPU ms | the daemon's own functions (bench_floor), fastest of 9 passes |" % (
                fmt(med(rs, "floor", "bytes_per_order"), 0),
                fmt(med(rs, "floor", "parse_ms_per_order"), 3),
                fmt(med(rs, "floor", "prep_ms_per_order"), 3)))
        row("| 1 | best ratio this machine allows a daemon that only parses: with the fake WDT "
            "/ if it cost nothing | %s / %s | %d CPUs ÷ (fakes' CPU + parse floor per bill) ÷ "
            "ceiling |" % (fmt(med(rs, "floor", "bound_ratio"), 2),
                           fmt(med(rs, "floor", "bound_ratio_free_wdt"), 2),
                           res["machine"]["nproc"]))
        row("| 1 | daemon CPU per bill that ratio 0.5 would leave: with the fake WDT / if it "
            "cost nothing | %s / %s ms | measured %s ms; parse + canonical text + hash alone "
            "%s ms |" % (fmt(med(rs, "floor", "daemon_ms_for_half"), 2),
                         fmt(med(rs, "floor", "daemon_ms_for_half_free_wdt"), 2),
                         fmt(med(rs, "cold", "cpu_ms_per_bill"), 2),
                         fmt(med(rs, "floor", "prep_ms_per_bill"), 2)))
    f = res.get("footprint")
    if f:
        s, L = f["small"], f["large"]
        for name, rs in (("small", s), ("large", L)):
            if not rs:
                continue
            row("| 2 | peak RSS / RssAnon, %d-order backlog (%d bills, %d run(s)) | %s / %s MiB "
                "| sampled every 100 ms |" % (rs[0]["orders"], rs[0]["bills"], len(rs),
                                               fmt(med(rs, "peak_rss_kb") / 1024.0),
                                               fmt(med(rs, "peak_anon_kb") / 1024.0)))
        for name, rs in (("small", s), ("large", L)):
            if rs:
                row("| 2 | CPU seconds per 1,000 bills, %d-order backlog | %s | daemon utime + "
                    "stime |" % (rs[0]["orders"], fmt(med(rs, "cpu_s_per_1000"), 2)))
        if s and L:
            row("| 2 | RssAnon growth large / small | %s× | target: no growth (≈ 1) |" % fmt(
                med(L, "peak_anon_kb") / med(s, "peak_anon_kb"), 2))
        if f.get("note"):
            row("| 2 | note | | %s |" % f["note"])
    if t:
        rs = t["runs"]
        row("| 3 | Kingdee calls per saved bill (warm, steady state) | %s | all endpoints except "
            "admin; ideal 1.0 |" % fmt(med(rs, "kingdee_calls_per_bill_warm"), 3))
        row("| 3 | WDT calls per 100 orders, warm / cold backlog | %s / %s | eligible orders "
            "fetched |" % (fmt(med(rs, "wdt_calls_per_100_warm"), 2),
                           fmt(med(rs, "wdt_calls_per_100_cold"), 2)))
    la = res.get("latency")
    if la:
        rs = la["runs"]
        row("| 4 | latency p50 modified → bill (%d orders/s live, interval 5s, lag 2s) | %s s | "
            "%d samples per run |" % (la["rate"], fmt(med(rs, "p50_s"), 2), rs[0]["samples"]))
        row("| 4 | latency p99 | %s s | target ≤ 8 s (interval + lag + 1 s) |" % fmt(
            med(rs, "p99_s"), 2))
    q = res.get("quota")
    if q:
        rs = q["runs"]
        row("| 5 | saves/min over minutes 2..3 at quota %d/min | %s (%s %% of quota) | target ≥ "
            "95 %% |" % (rs[0]["quota_per_min"], fmt(med(rs, "saves_per_min_2_3")),
                         fmt(med(rs, "pct_of_quota"))))
        row("| 5 | saves in minute 3 alone / all Kingdee calls per minute over 2..3 | %s / %s "
            "| lookups left over from minute 1 share the quota in minute 2 |" % (
                fmt(med(rs, "saves_minute_3")), fmt(med(rs, "calls_per_min_2_3"))))
        row("| 5 | HTTP 429 from the fake: first minute / after | %s / %s | target 0 after the "
            "first minute |" % (fmt(med(rs, "rate_limited_first_min")),
                                fmt(med(rs, "rate_limited_after_first_min"))))
        row("| 5 | max Kingdee calls in any 60 s (fake) | %s | quota %d |" % (
            fmt(med(rs, "max_calls_in_any_60s")), rs[0]["quota_per_min"]))
    elif res["mode"] == "quick":
        row("| 5 | quota adherence | skipped | full run only |")
    c = res.get("paced")
    if c:
        p, u = c.get("paced", []), c.get("unpaced", [])
        if p:
            row("| 6 | paced (%d saves/s, %d orders, %d eligible): daemon CPU ms per bill, user / "
                "system | %s / %s | steady state: 40 %% → 90 %% of the bills; target ≤ 0.15 "
                "together |" % (p[0]["paced"], p[0]["orders"], p[0]["eligible"],
                                fmt(med(p, "user_ms_per_bill"), 3),
                                fmt(med(p, "sys_ms_per_bill"), 3)))
            row("| 6 | paced: LMDB syncs (commits) per bill | %s | status store.commits; target "
                "≤ 0.2 |" % fmt(med(p, "syncs_per_bill"), 3))
            row("| 6 | paced: peak RssAnon | %s MiB | whole run; target ≤ 16 |" % fmt(
                med(p, "peak_anon_kb") / 1024.0))
        if u:
            row("| 6 | unpaced (%d orders): daemon CPU ms per bill, user / system / JSON floor | "
                "%s / %s / %s | steady state; floor: bench_floor parse + canonical text + hash "
                "|" % (u[0]["orders"], fmt(med(u, "user_ms_per_bill"), 3),
                       fmt(med(u, "sys_ms_per_bill"), 3), fmt(med(u, "floor_ms_per_bill"), 3)))
            row("| 6 | unpaced: daemon CPU per bill ÷ JSON floor | %s | target ≤ 1.5 |" % fmt(
                med(u, "floor_ratio"), 2))
            row("| 6 | unpaced throughput, %s | %s bills/s | steady state; peak RssAnon %s MiB "
                "|" % ("fakes on CPU 0, daemon on CPU 1" if u[0]["pinned"] else "not pinned",
                       fmt(med(u, "bills_per_s")), fmt(med(u, "peak_anon_kb") / 1024.0)))
    for e in res.get("errors", []):
        row("| ! | error | | %s |" % e.replace("|", "/"))
    out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description="wdt2jdy benchmarks against the fakes")
    ap.add_argument("--build", required=True, help="meson build directory")
    ap.add_argument("--quick", action="store_true", help="1 run, small sizes (smoke test)")
    ap.add_argument("--out", help="output directory [BUILD/bench]")
    ap.add_argument("--only", default=",".join(FIGURES),
                    help="comma-separated subset of: " + ", ".join(FIGURES))
    ap.add_argument("--runs", type=int, help="runs per figure [3, quick 1]")
    ap.add_argument("--large", type=int, help="orders in the large footprint backlog "
                    "[80000, quick 8000]; the issue's figure is 1000000 (about 25 min)")
    a = ap.parse_args()
    setup_env(a.build)
    only = set(a.only.split(","))
    if only - set(FIGURES):
        sys.exit("run.py: unknown figure(s): %s" % ", ".join(sorted(only - set(FIGURES))))
    quick = a.quick
    runs = a.runs or (1 if quick else 3)
    out = a.out or os.path.join(a.build, "bench")
    os.makedirs(out, exist_ok=True)
    conc = 8
    size = {"tp": 2000 if quick else 50000, "fp_small": 2000 if quick else 10000,
            "fp_large": a.large or (8000 if quick else 80000), "lat_s": 20 if quick else 40,
            "quota_orders": 6000, "paced_orders": 3000,
            "unpaced_orders": 3000 if quick else 10000}
    res = {"mode": "quick" if quick else "full", "runs": runs, "build": os.path.abspath(a.build),
           "machine": machine_facts(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
           "errors": []}
    t_all = time.monotonic()

    def attempt(name, fn):
        try:
            return fn()
        except Exception as e:  # keep the other figures
            res["errors"].append("%s: %s" % (name, e))
            log("%s failed: %s" % (name, e))
            return None

    if "throughput" in only:
        rs = [attempt("throughput", lambda i=i: bench_throughput(size["tp"], 1 + i, conc, 600))
              for i in range(runs)]
        rs = [r for r in rs if r]
        if rs:
            res["throughput"] = {"concurrency": conc, "runs": rs}
    if "footprint" in only:
        small = [attempt("footprint", lambda i=i: bench_footprint(size["fp_small"], 1 + i, conc,
                                                                 600)) for i in range(runs)]
        large = [attempt("footprint", lambda: bench_footprint(
            size["fp_large"], 7, conc, max(900, size["fp_large"] // 100)))]
        res["footprint"] = {"small": [r for r in small if r], "large": [r for r in large if r],
                            "note": "large backlog: %d orders, one run (time budget)" %
                            size["fp_large"]}
    if "latency" in only:
        rs = [attempt("latency", lambda i=i: bench_latency(20, size["lat_s"], 1 + i))
              for i in range(runs)]
        rs = [r for r in rs if r]
        if rs:
            res["latency"] = {"rate": 20, "runs": rs}
    if "quota" in only and not quick:
        r = attempt("quota", lambda: bench_quota(size["quota_orders"], 1, 500, 3))
        if r:
            res["quota"] = {"runs": [r], "note": "one run (about 3 min)"}
    if "paced" in only:
        cost = {"paced": [], "unpaced": []}
        for i in range(runs if not quick else 1):
            r = attempt("paced", lambda i=i: bench_cost(size["paced_orders"], 1 + i, conc, 300,
                                                        100, False))
            if r:
                cost["paced"].append(r)
            r = attempt("paced", lambda i=i: bench_cost(size["unpaced_orders"], 1 + i, conc,
                                                        300, 0, True))
            if r:
                cost["unpaced"].append(r)
        res["paced"] = cost
    res["total_s"] = time.monotonic() - t_all
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(res, f, indent=2, ensure_ascii=False)
        f.write("\n")
    md = markdown(res)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(md)
    print(md)
    log("total %.0f s; results in %s" % (res["total_s"], out))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
