"""Exactly one gain bill per stock-in, with a hostile proxy between the daemon and the fake
Kingdee (test/integration/hostile.py).

Scenarios (run one with `test_exactly_once.py NAME`):
  outage        Kingdee unreachable for a while (gateway errors, lost answers, failed logins,
                closed connections) with max_attempts 3 → no dead letter, every order once
  reload        SIGHUP with a mapping that reads one more field, under load → no dead letter
  flow-removed  orders of a flow taken out of the config are parked ("flow removed"), no bill
                is made with another flow's mapping; replayed once the flow is back → posted
"""

import json
import signal
import sys
import time

from wjtest import check, ctl, wait_for  # first: it puts test/fake on the module path
from e2e import compare_bills, e2e_stack, log_tail, run_scenarios, wait_settled
from hostile import Proxy

SAVE_V1 = "/jdy/inv/inv_check_gain_bill_save"

def first(items, n=3):
    return "; ".join(str(x) for x in items[:n]) + (" ..." if len(items) > n else "")


def proxied(st):
    """Put a hostile proxy between the daemon and the fake Kingdee of st."""
    p = Proxy(st.jdy.url)
    st.cfg["kingdee"]["url"] = p.url
    st.write()
    st.proxy = p
    return p


def dead_count(st):
    return st.state().get("dead", -1)


def queue_empty(st):
    q = st.state().get("queue", {})
    return q.get("ready", 1) + q.get("delayed", 1) + q.get("in_flight", 1) == 0


def once_each(st, orders, what):
    """Every order has exactly one bill (by marker); nothing else from the daemon."""
    missing, dups, extra, _ = compare_bills(st.bills(), orders, "v1")
    ok = check(not missing and not dups,
               "%s: one bill per order (missing %d, duplicated %d: %s)" % (
                   what, len(missing), len(dups), first(dups + missing) or "none"))
    return ok


def settle(st, n, what, timeout=120, dead=0):
    took, bills, nd = wait_settled(st, n, timeout=timeout)
    ok = check(took is not None, "%s: the daemon finished with %d orders (%s)" % (
        what, n, "%.1fs" % took if took is not None else "timeout: %d bills, %d dead" % (
            bills, nd)))
    ok = check(nd == dead, "%s: %d dead letters (%d)" % (what, dead, nd)) and ok
    if not ok:
        r = ctl(st.cfg_path, "dlq", "list")
        print("# dlq:\n# " + (r.stdout + r.stderr).replace("\n", "\n# "))
        print("# state: %s" % st.state())
        print("# daemon log tail:\n# " + log_tail(st, 40).replace("\n", "\n# "))
    return ok


# ---- an outage never uses up attempts ---------------------------------------------------

def outage(h):
    st = h["stack"] = e2e_stack(
        100, seed=75, wdt_args=["--eligible-pct", "100"],
        jdy_args=["--max-saves-per-sec", "15", "--search-mode", "remark"],
        kingdee__timeout="2s", queue__max_attempts=3,
        queue__backoff={"initial": "200ms", "max": "1s"})
    p = proxied(st)
    orders = st.eligible()
    st.start()
    wait_for(lambda: len(st.bills()) >= 15, timeout=60)
    # Phase 1: the gateway errs: saves are stored but answered 502, logins and lists fail.
    st.jdy.admin_post("/admin/expire-tokens")
    p.add(lambda r: r.path == SAVE_V1, "status_after", status=502)
    p.add(lambda r: True, "status_before", status=503)
    time.sleep(6)
    # Phase 2: connections close without an answer.
    p.clear()
    p.add(lambda r: True, "drop_before")
    time.sleep(4)
    p.clear()
    down = len(p.seen(lambda r: r.action in ("status_after", "status_before", "drop_before")))
    check(down > 0, "outage: the proxy failed %d requests" % down)
    check(dead_count(st) == 0, "outage: nothing dead-lettered during the outage")
    settle(st, len(orders), "outage: after recovery")
    once_each(st, orders, "outage")
    check(st.jdy_stats()["duplicate_remarks"] == 0, "outage: no duplicate remark at the fake")


# ---- a reload that changes the mapping ---------------------------------------------------

def mapping_v1(extra=None):
    bill = {"billdate": {"path": "stockin_time", "fallback": ["check_time", "modified"],
                         "convert": "date"},
            "remark": {"template": "WDT:{stockin_no}"}}
    bill.update(extra or {})
    return {"bill": bill,
            "lines": {"materialid_id": {"lookup": "material.id", "path": "spec_no"},
                      "stockid_id": {"lookup": "store.id", "path": "order.warehouse_no"},
                      "qty": {"path": "goods_count", "convert": "number", "positive": True},
                      "unit_id": {"lookup": "material.base_unit_id", "path": "spec_no"},
                      "billno": {"path": "order.src_order_no"}}}


def reload(h):
    st = h["stack"] = e2e_stack(120, seed=76, wdt_args=["--eligible-pct", "100"],
                                jdy_args=["--max-saves-per-sec", "20"], kingdee__concurrency=2)
    st.cfg["flows"][0]["mapping"] = mapping_v1()
    st.write()
    orders = st.eligible()
    st.start()
    wait_for(lambda: len(st.bills()) >= 25, timeout=60)
    st.cfg["flows"][0]["mapping"] = mapping_v1({"note": {"path": "warehouse_name"}})
    st.write()
    st.daemon.signal(signal.SIGHUP)
    settle(st, len(orders), "reload")
    once_each(st, orders, "reload")
    noted = [b for b in st.bills() if (b.get("body") or {}).get("note")]
    check(noted, "reload: bills after the reload carry the new field (%d)" % len(noted))
    check(st.status().get("reloads") == 1, "reload: the daemon reloaded once")


# ---- orders of a flow removed from the configuration -------------------------------------

def flow_removed(h):
    st = h["stack"] = e2e_stack(12, seed=77, wdt_args=["--eligible-pct", "100"])
    p = proxied(st)
    orders = st.eligible()
    flow = json.loads(json.dumps(st.cfg["flows"][0]))
    # Kingdee down: the orders are read and queued, none is posted.
    rule = p.add(lambda r: True, "status_before", status=503)
    st.start()
    ok = wait_for(lambda: st.state().get("orders") == len(orders), timeout=60)
    check(ok, "flow-removed: %d orders queued while Kingdee is down" % len(orders))
    check(st.daemon.stop() == 0, "flow-removed: daemon stopped")
    rule.times = 0
    other = json.loads(json.dumps(flow))
    other["name"] = "other"
    other["source"]["params"] = {"order_type": "99", "status": "80"}
    st.cfg["flows"] = [other]
    st.write()
    st.start()
    ok = wait_for(lambda: dead_count(st) == len(orders) and queue_empty(st), timeout=60)
    check(ok, "flow-removed: the orders of the removed flow are parked (%s dead)" %
          dead_count(st))
    check(len(st.bills()) == 0, "flow-removed: no bill made with another flow's mapping (%d)" %
          len(st.bills()))
    listing = ctl(st.cfg_path, "dlq", "list").stdout
    check("flow removed" in listing, "flow-removed: the reason says \"flow removed\"")
    check(st.daemon.stop() == 0, "flow-removed: daemon stopped again")
    st.cfg["flows"] = [flow, other]
    st.write()
    st.start()
    r = ctl(st.cfg_path, "dlq", "retry", "--all")
    check(r.returncode == 0, "flow-removed: dlq retry --all once the flow is back")
    settle(st, len(orders), "flow-removed: replayed")
    once_each(st, orders, "flow-removed")


SCENARIOS = {
    "outage": outage,
    "reload": reload,
    "flow-removed": flow_removed,
}

run_scenarios(SCENARIOS, sys.argv[1:])
