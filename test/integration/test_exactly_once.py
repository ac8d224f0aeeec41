"""Exactly one gain bill per stock-in, with a hostile proxy between the daemon and the fake
Kingdee (test/integration/hostile.py).

Scenarios (run one with `test_exactly_once.py NAME`):
  paging        reconcile lists the bills created around the send time, reads every page and
                matches the marker as a whole token: 105 bills whose remark contains "WDT:RK1"
                (RK1000…), RK1's answer lost after the save → still one bill; RK2 never reached
                Kingdee and bills "WDT:RK20"… exist → RK2 is posted, once. The fake's list
                search matches bill numbers (paging), remarks (paging-remark) or nothing
                (paging-none, with a mapping that sets a header billno, asked first);
                paging-password lists through the V1 list of the account login
  gateway       a save answered 502, 503 or 504 after the fake stored it → one bill each
  dlq           a save stored but answered with an error envelope goes to the dead letters;
                `dlq retry` reconciles first → one bill
  crash         a job held behind a long Retry-After, its save slow at the proxy, SIGKILL
                right after the save reached the proxy, restart → one bill
  unknown-invalid  an order in flight at a SIGKILL whose lookups then fail one by one (unknown
                materials and warehouse) → reconciled once, parked once, the daemon unharmed
  outage        Kingdee unreachable for a while (gateway errors, lost answers, failed logins,
                closed connections) with max_attempts 3 → no dead letter, every order once
  reload        SIGHUP with a mapping that reads one more field, under load → no dead letter
  flow-removed  orders of a flow taken out of the config are parked ("flow removed"), no bill
                is made with another flow's mapping; replayed once the flow is back → posted
"""

import json
import re
import signal
import sys
import time

from wjtest import Daemon, check, ctl, read, remark_counts, wait_for  # first: module path
from e2e import (compare_bills, derived_order, e2e_stack, log_tail, run_scenarios, wait_settled,
                 wait_status)
from hostile import Proxy

SAVE_V1 = "/jdy/inv/inv_check_gain_bill_save"


def first(items, n=3):
    return "; ".join(str(x) for x in items[:n]) + (" ..." if len(items) > n else "")


def remark_of(req):
    body = req.json() if req.body else None
    return body.get("remark") if isinstance(body, dict) else None


def save_of(marker):
    """A proxy match: the save of the order with this marker."""
    return lambda r: r.path == SAVE_V1 and remark_of(r) == marker


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


def extra_orders(st, nos, modified=None):
    """Orders with the given stockin_nos, derived from a generated one, added to the fake WDT
    in the polled range. Returns them."""
    t = st.eligible()[0]
    mod = modified or t["modified"]
    out = [derived_order(t, 500 + i, mod, stockin_no=no) for i, no in enumerate(nos)]
    r = st.wdt.admin_post("/admin/orders", {"orders": out})
    check(r.get("inserted") == len(out), "%d orders %s added at the fake WDT" % (
        len(out), first(nos)))
    return out


def seed_bills(st, remarks):
    """Bills with these remarks at the fake Kingdee, saved as any client would."""
    c = st.jdy.client()
    c.login()
    for rem in remarks:
        body = {"billdate": "2026-01-01", "remark": rem,
                "material_entity": [{"materialid_id": "M1", "stockid_id": "S01", "qty": 1,
                                     "unit_id": "U2"}]}
        status, _, b = c.call("POST", SAVE_V1, body=body)
        if status != 200 or not (b or {}).get("success"):
            raise RuntimeError("seeding bill %s: %s %s" % (rem, status, b))


# ---- reconcile by time range, every page, exact token -----------------------------------

def paging_mode(h, mode, billno=False, password=False):
    what = "paging (search %s%s%s)" % (mode, ", header billno" if billno else "",
                                       ", V1 account login" if password else "")
    st = h["stack"] = e2e_stack(5, seed=71, wdt_args=["--eligible-pct", "100"],
                                jdy_args=["--search-mode", mode], kingdee__timeout="2s")
    if billno:
        st.cfg["flows"][0]["mapping"] = mapping_v1({"billno": {"template": "PY-{stockin_no}"}})
    if password:  # the V1 list answers, with its own field names
        st.cfg["kingdee"].update({"auth": "password", "username": "test-user",
                                  "password": "test-password",
                                  "account_id": "1584244570835057173"})
        del st.cfg["kingdee"]["outer_instance_id"]
    p = proxied(st)
    orders = st.eligible() + extra_orders(st, ["RK1", "RK2"])
    # More than a page of bills whose remark has "WDT:RK1" in it, and near misses of RK2.
    noise = ["WDT:RK%d" % n for n in range(1000, 1105)]
    noise += ["WDT:RK20", "WDT:RK21", "WDT:RK2-1", "XWDT:RK2", "WDT:RK2x"]
    seed_bills(st, noise)
    p.add(save_of("WDT:RK1"), "drop_after", times=1)   # stored, answer lost
    p.add(save_of("WDT:RK2"), "drop_before", times=1)  # never reached Kingdee
    st.start()
    settle(st, len(orders) + len(noise), what)
    c = remark_counts(st.bills())
    check(c.get("WDT:RK1") == 1, "%s: RK1 (answer lost, bill on a later page) has one bill (%s)"
          % (what, c.get("WDT:RK1")))
    check(c.get("WDT:RK2") == 1, "%s: RK2 (never stored; RK20, RK2-1… exist) has one bill (%s)"
          % (what, c.get("WDT:RK2")))
    once_each(st, orders, what)
    check(all(c.get(r) == 1 for r in noise), "%s: the other bills are untouched" % what)
    check(len(p.seen(lambda r: r.action in ("drop_after", "drop_before"))) == 2,
          "%s: the proxy lost both answers" % what)
    s = wait_status(st, lambda s: s.get("queue", {}).get("reconcile_pages", 0) >= 4)
    pages = s.get("queue", {}).get("reconcile_pages", 0)
    check(pages >= 4, "%s: reconciling read every page (%d pages)" % (what, pages))
    if billno:
        lists = p.seen(lambda r: r.path.endswith(("bill_list", "gail_bill")) and
                       r.method == "GET")
        check(any(r.query.get("search") == "PY-RK1" for r in lists),
              "%s: asked by the header bill number first" % what)
    if password:
        lists = p.seen(lambda r: r.path.endswith("inv_check_gain_bill_list"))
        check(lists, "%s: reconciled through the V1 list (%d calls)" % (what, len(lists)))


def paging(h):
    paging_mode(h, "number")


def paging_remark(h):
    paging_mode(h, "remark")


def paging_none(h):
    paging_mode(h, "none", billno=True)


def paging_password(h):
    paging_mode(h, "number", password=True)


# ---- 502/503/504 after the body was sent ------------------------------------------------

def gateway(h):
    st = h["stack"] = e2e_stack(20, seed=72, wdt_args=["--eligible-pct", "100"],
                                kingdee__timeout="2s")
    p = proxied(st)
    orders = st.eligible()
    hit = {}
    for o, status in zip(orders[:3], (502, 503, 504)):
        m = "WDT:" + o["stockin_no"]
        hit[status] = m
        p.add(save_of(m), "status_after", times=1, status=status)
    st.start()
    settle(st, len(orders), "gateway")
    c = remark_counts(st.bills())
    for status, m in sorted(hit.items()):
        check(c.get(m) == 1, "gateway: a save answered %d after it was stored: one bill (%s)" % (
            status, c.get(m)))
    check(len(p.seen(lambda r: r.action == "status_after")) == 3,
          "gateway: the proxy answered 502, 503 and 504 once each")
    once_each(st, orders, "gateway")


# ---- stored but answered with an error, then `dlq retry` --------------------------------

ERROR_ENVELOPE = json.dumps({"errcode": 2000002001, "description": "单据校验失败",
                             "data": None}, ensure_ascii=False)


def dlq(h):
    st = h["stack"] = e2e_stack(8, seed=73, wdt_args=["--eligible-pct", "100"],
                                kingdee__timeout="2s")
    p = proxied(st)
    orders = st.eligible()
    a, b = ("WDT:" + o["stockin_no"] for o in orders[:2])
    p.add(save_of(a), "status_after", times=1, status=200,
          headers=[("Content-Type", "application/json")], body=ERROR_ENVELOPE)
    p.add(save_of(b), "rewrite", times=1,
          fn=lambda s, hd, body: (200, [("Content-Type", "application/json")], ERROR_ENVELOPE))
    st.start()
    ok = wait_for(lambda: dead_count(st) == 2 and queue_empty(st), timeout=60)
    check(ok, "dlq: the two saves answered with an error are dead letters (%s)" % dead_count(st))
    c = remark_counts(st.bills())
    check(c.get(a) == 1 and c.get(b) == 1, "dlq: Kingdee holds their bills anyway")
    # the dead letter shows the body as it was sent: "qty": 3, never jansson's "qty": 3.0
    shown = ctl(st.cfg_path, "dlq", "show", orders[0]["stockin_no"]).stdout
    check('"qty": ' in shown and not re.search(r'"qty": \d+\.0\b', shown),
          "dlq: show prints the quantities as sent (%s)"
          % re.findall(r'"qty": [^,\n]*', shown)[:2])
    r = ctl(st.cfg_path, "dlq", "retry", "--all")
    check(r.returncode == 0 and "2 queued again" in r.stdout, "dlq: retry --all (%s)" %
          r.stdout.strip())
    settle(st, len(orders), "dlq: after retry")
    c = remark_counts(st.bills())
    check(c.get(a) == 1 and c.get(b) == 1, "dlq: still one bill each after the replay (%s, %s)"
          % (c.get(a), c.get(b)))
    once_each(st, orders, "dlq")
    check("already in Kingdee" in read(st.log), "dlq: the replay found the bills by reconciling")


# ---- settle wait counted from the send, across a crash ----------------------------------

def crash(h):
    st = h["stack"] = e2e_stack(2, seed=74, wdt_args=["--eligible-pct", "100"],
                                kingdee__timeout="5s", kingdee__concurrency=1)
    p = proxied(st)
    orders = st.eligible()
    check(len(orders) == 2, "crash: two orders (%d)" % len(orders))
    # The first save is refused with a long Retry-After: the other job, already taken, waits
    # behind the pause; its save then takes 5 s at the proxy before reaching Kingdee.
    p.add(lambda r: r.path == SAVE_V1, "status_before", times=1, status=429,
          headers=[("Retry-After", "12"), ("Content-Type", "application/json")],
          body=json.dumps({"errcode": 1030002009, "description": "rate limited"}))
    p.add(lambda r: r.path == SAVE_V1, "delay", times=1, seconds=5)
    st.start()
    ok = wait_for(lambda: p.seen(lambda r: r.action == "delay"), timeout=60, step=0.02)
    check(bool(ok), "crash: a save reached the proxy after the Retry-After pause")
    st.daemon.kill()
    check(len(st.bills()) == 0, "crash: killed before that save reached Kingdee")
    st.daemon = Daemon(st.cfg_path).start()
    settle(st, len(orders), "crash: after restart", timeout=90)
    held = p.seen(lambda r: r.action == "delay")[0]
    check(wait_for(lambda: held.status is not None, timeout=30),
          "crash: the held save has reached Kingdee (%s)" % held.status)
    once_each(st, orders, "crash")
    c = remark_counts(st.bills())
    check(len(st.bills()) == 2, "crash: two bills in all (%s)" % c)


# ---- an unsettled order that turns out invalid ------------------------------------------------

LOOKUP = "/jdy/v2/bd/"


def unknown_invalid(h):
    # A slow quota (a call every 3 s) keeps calls waiting for their turn while others answer.
    st = h["stack"] = e2e_stack(1, seed=78, wdt_args=["--eligible-pct", "100"],
                                kingdee__timeout="2s", kingdee__rate_limit="20/min")
    p = proxied(st)
    o = st.eligible()[0]
    o["details_list"] = o["details_list"][:2]
    o["details_list"][0]["spec_no"] = "NOSUCH01"
    if len(o["details_list"]) > 1:
        o["details_list"][1]["spec_no"] = "NOSUCH02"
    o["warehouse_no"] = "WH09"
    st.wdt.admin_post("/admin/orders", {"orders": [o]})
    no = o["stockin_no"]
    # Killed while the order is taken: after the restart it is unsettled, and each of its
    # lookups fails (unknown materials and warehouse) while the others still wait.
    p.add(lambda r: r.path.startswith(LOOKUP), "delay", seconds=3)
    st.start()
    ok = wait_for(lambda: p.seen(lambda r: r.path.startswith(LOOKUP)), timeout=60)
    check(bool(ok), "unknown-invalid: a lookup of the order reached the proxy")
    st.daemon.kill()
    p.clear()
    st.daemon = Daemon(st.cfg_path).start()
    settle(st, 1, "unknown-invalid", dead=1)
    check(st.daemon.alive(), "unknown-invalid: the daemon is still running")
    dl = ctl(st.cfg_path, "dlq", "show", no).stdout
    check("NOSUCH0" in dl or "WH09" in dl, "unknown-invalid: parked with a failed lookup as reason")
    check(len(st.bills()) == 0, "unknown-invalid: no bill")
    s = wait_status(st, lambda s: s.get("queue", {}).get("reconciled_missing", 0) >= 1)
    asked = s.get("queue", {}).get("reconciled_missing")
    check(asked == 1, "unknown-invalid: Kingdee was asked once before it was parked (%s)" % asked)


# ---- an outage never uses up attempts ---------------------------------------------------

def outage(h):
    st = h["stack"] = e2e_stack(
        100, seed=75, wdt_args=["--eligible-pct", "100"], jdy_args=["--max-saves-per-sec", "15"],
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
    "paging": paging,
    "paging-remark": paging_remark,
    "paging-none": paging_none,
    "paging-password": paging_password,
    "gateway": gateway,
    "dlq": dlq,
    "crash": crash,
    "unknown-invalid": unknown_invalid,
    "outage": outage,
    "reload": reload,
    "flow-removed": flow_removed,
}

run_scenarios(SCENARIOS, sys.argv[1:])
