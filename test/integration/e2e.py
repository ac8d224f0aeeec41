"""End-to-end helpers: the fake WDT, the fake Kingdee and the real daemon on one temporary
state, and the gain bills the daemon must produce from the fake's orders.

The expected bodies follow DESIGN.md's default mapping and the catalogue shared by the two fakes
(test/fake/): spec_no "SP<5 digits>" is Kingdee material "M<index>" with base unit
"U<index % 3 + 1>"; warehouse "WH0n" is store "S0n", "CK001" is "S99". Standard library only."""

import copy
import os
import shutil
import time
import traceback

from wjtest import Stack, check, finish, read, wait_for  # first: puts test/fake on the path
import wjfake  # noqa: E402

# A quota so high that it never throttles, for runs where quotas are not the subject.
NO_QUOTA = "100000/min"

STORES = {"WH01": "S01", "WH02": "S02", "WH03": "S03", "WH04": "S04", "WH05": "S05",
          "CK001": "S99"}

ZERO_TIME = "0000-00-00 00:00:00"


def recent_start(days_back=5):
    """A fake --start a few days before now (whole hour, +08:00), so that the daemon catches
    up to now in a handful of 1-day windows whatever today's date is."""
    t = int(time.time()) - days_back * 86400
    return wjfake.wdt_time(t - t % 3600)


def e2e_stack(orders, start=None, span_days=3, seed=1, wdt_args=(), jdy_args=(),
              kingdee_api="v1", **cfg_over):
    """Both fakes (quotas off) and a config for the daemon (not started yet).

    cfg_over uses Stack's "a__b__c" key paths and wins over the defaults here: no quota on
    either side, cursor at the fake's --start, window 1d, lag 1s, interval 1s, status every
    second. The caller owns the result and must call close_stack()."""
    start = start or recent_start(span_days + 2)
    wargs = ["--orders", str(orders), "--seed", str(seed), "--start", start,
             "--span-days", str(span_days), "--rate-limit", "0"] + list(wdt_args)
    jargs = ["--rate-limit", "0"] + list(jdy_args)
    over = {"wdt__rate_limit": NO_QUOTA, "kingdee__rate_limit": NO_QUOTA,
            "status__interval": "1s",
            "flows__0__cursor__start": start, "flows__0__cursor__window": "1d",
            "flows__0__cursor__lag": "1s", "flows__0__cursor__interval": "1s"}
    over.update(cfg_over)
    st = Stack(wdt_args=wargs, jdy_args=jargs, kingdee_api=kingdee_api, **over)
    st.start_arg = start
    return st


ACCOUNT = "1584244570835057173"
PASSWORD = "test-password"


def password_stack(n, seed, jdy_args=(), account=ACCOUNT, **over):
    """A stack whose daemon uses the account login; not started."""
    st = e2e_stack(n, seed=seed, jdy_args=jdy_args, kingdee__auth="password",
                   kingdee__username="test-user", kingdee__password=PASSWORD,
                   kingdee__account_id=account, **over)
    del st.cfg["kingdee"]["outer_instance_id"]
    st.write()
    return st



def close_stack(st, keep=False):
    """Stop the daemon and both fakes; returns the daemon's exit status (None if it was not
    running). Removes the temporary directory unless keep or $WJ_E2E_KEEP is set."""
    rc = st.close()
    if keep or os.environ.get("WJ_E2E_KEEP"):
        print("# kept %s" % st.tmp)
    else:
        shutil.rmtree(st.tmp, ignore_errors=True)
    return rc


def run_scenarios(scenarios, names):
    """Run the scenarios named (all when names is empty; scenarios maps name → fn), print
    their timings and finish the script (exit 0 when every check passed)."""
    t0 = time.monotonic()
    timings = []
    for name in names or list(scenarios):
        print("# scenario %s" % name, flush=True)
        run_scenario(scenarios[name], timings)
    for name, secs in timings:
        print("# %-28s %6.1fs" % (name, secs))
    print("# total %.1fs" % (time.monotonic() - t0))
    finish()


def run_scenario(fn, timings):
    """Run one scenario fn(holder) of a test script. An exception counts as a failed check.
    The stack the scenario put in holder["stack"] is then stopped (its daemon must exit 0
    and report nothing to the sanitizers) and closed, with its hostile proxy (st.proxy) if it
    has one. Appends (name, seconds) to timings."""
    name = fn.__name__
    t = time.monotonic()
    holder = {}
    try:
        fn(holder)
    except Exception:
        traceback.print_exc()
        check(False, "%s: ran without an exception" % name)
    finally:
        st = holder.get("stack")
        if st is not None:
            if st.daemon and st.daemon.alive():
                rc = st.daemon.stop()
                check(rc == 0, "%s: daemon exits 0 on SIGTERM (got %s)" % (name, rc))
            err = read(st.cfg_path + ".stderr")
            check("runtime error:" not in err and "Sanitizer" not in err,
                  "%s: no sanitizer report from the daemon" % name)
            if getattr(st, "proxy", None):
                st.proxy.close()
            close_stack(st)
    timings.append((name, time.monotonic() - t))


def log_tail(st, n=30):
    return "\n".join(read(st.log).splitlines()[-n:])


def wait_settled(st, expect, timeout=90.0):
    """Wait until the daemon has finished with expect orders: the queue is empty (nothing
    ready, delayed or in flight) and the orders with a bill at the fake (distinct markers)
    plus dead letters reach expect. Returns (elapsed seconds or None on timeout, distinct
    markers at the fake, dead letters)."""
    t0 = time.monotonic()
    last = [0, 0]

    def done():
        try:
            s = st.state()
            q = s.get("queue", {})
            busy = q.get("ready", 1) + q.get("delayed", 1) + q.get("in_flight", 1)
            last[:] = [len({b.get("remark") for b in st.bills()}), s.get("dead", 0)]
        except (OSError, ValueError):
            return False
        return busy == 0 and last[0] + last[1] >= expect
    if wait_for(done, timeout=timeout, step=0.3):
        return time.monotonic() - t0, last[0], last[1]
    return None, last[0], last[1]


def wait_status(st, pred, timeout=10.0):
    """Wait until pred(status.json) holds; returns the last status read."""
    last = {}

    def probe():
        nonlocal last
        last = st.status()
        return pred(last)
    wait_for(probe, timeout=timeout, step=0.2)
    return last


# ---- expected bodies -------------------------------------------------------------------

def material_of(spec_no):
    """(Kingdee material id, base unit id) of a catalogue spec_no, or None if unknown."""
    if not spec_no.startswith("SP") or not spec_no[2:].isdigit():
        return None
    i = int(spec_no[2:])
    return "M%d" % i, "U%d" % (i % 3 + 1)


def bill_date(order):
    """Date part of stockin_time, else check_time, else modified; empty, absent and zero
    times ("0000-00-00 00:00:00") count as not set."""
    for k in ("stockin_time", "check_time", "modified"):
        v = order.get(k)
        if isinstance(v, str) and v and v != ZERO_TIME:
            return v[:10]
    return None


def marker(order):
    return "WDT:" + order["stockin_no"]


def expected_body(order, api):
    """The save body (as a dict) the default mapping must produce for order."""
    date_key, mat_key, stock_key = (("billdate", "materialid_id", "stockid_id") if api == "v1"
                                    else ("bill_date", "material_id", "stock_id"))
    lines = []
    for d in order["details_list"]:
        mat, unit = material_of(d["spec_no"])
        e = {mat_key: mat, stock_key: STORES[order["warehouse_no"]],
             "qty": float(d["goods_count"]), "unit_id": unit}
        if api == "v1":
            e["billno"] = order["src_order_no"]
        lines.append(e)
    return {date_key: bill_date(order), "remark": marker(order), "material_entity": lines}


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def body_problems(body, order, api):
    """Differences between a saved body and the expected one, as short texts (empty: equal).
    Field by field: bill date, remark, then each entry in line order."""
    want = expected_body(order, api)
    no = order["stockin_no"]
    out = []
    for k in want:
        if k != "material_entity" and body.get(k) != want[k]:
            out.append("%s: %s is %r, expected %r" % (no, k, body.get(k), want[k]))
    got = body.get("material_entity")
    if not isinstance(got, list) or len(got) != len(want["material_entity"]):
        out.append("%s: %d entries, expected %d" % (
            no, len(got) if isinstance(got, list) else -1, len(want["material_entity"])))
        return out
    for i, (g, w) in enumerate(zip(got, want["material_entity"])):
        for k, v in w.items():
            gv = g.get(k)
            same = (is_number(gv) and gv == v) if k == "qty" else gv == v
            if not same:
                out.append("%s: material_entity[%d].%s is %r, expected %r" % (no, i, k, gv, v))
        if api == "v2" and "billno" in g:
            out.append("%s: material_entity[%d] carries billno in v2" % (no, i))
    return out


def compare_bills(bills, orders, api):
    """Match bills to orders by marker. Returns (missing markers, duplicated markers,
    unexpected markers, list of field problems)."""
    by_marker = {}
    for b in bills:
        by_marker.setdefault(b.get("remark"), []).append(b)
    want = {marker(o): o for o in orders}
    missing = sorted(m for m in want if m not in by_marker)
    dups = sorted(m for m, bs in by_marker.items() if len(bs) > 1)
    extra = sorted(str(m) for m in by_marker if m not in want)
    problems = []
    for m, o in sorted(want.items()):
        for b in by_marker.get(m, [])[:1]:
            problems += body_problems(b.get("body") or {}, o, api)
    return missing, dups, extra, problems


def derived_order(template, serial, modified, **fields):
    """A copy of a fake order with a new stockin_id / stockin_no / src_order_no (from serial),
    the given modified time (also on its lines) and field overrides (None deletes a field)."""
    o = copy.deepcopy(template)
    o["stockin_id"] = 900000 + serial
    o["stockin_no"] = "RKE2E%05d" % serial
    o["src_order_no"] = "PDE2E%05d" % serial
    o["modified"] = modified
    for i, d in enumerate(o.get("details_list") or []):
        d["stockin_id"] = o["stockin_id"]
        d["rec_id"] = o["stockin_id"] * 100 + i + 1
        d["modified"] = modified
    for k, v in fields.items():
        if v is None:
            o.pop(k, None)
        else:
            o[k] = v
    return o
