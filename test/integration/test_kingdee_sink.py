"""The Kingdee side end to end: the real daemon between the fake WDT and the fake Kingdee.

1. v1 bodies field by field (and the bill date fallbacks), 2. the same for v2, 3. one lookup
call per distinct material and store, 4. token expiry and appSecret rotation during a run
(absolute and duration expiry), 5. unknown save outcomes settled by reconciliation without
duplicates, 6. a restart reuses the stored token."""

import sys
import time
import traceback

from wjtest import check, ctl, finish, read  # first: it puts test/fake on the module path
from e2e import (close_stack, compare_bills, derived_order, e2e_stack, log_tail, marker,
                 wait_settled, wait_status)
import wjfake

T0 = time.monotonic()
timings = []


def first(items, n=3):
    return "; ".join(str(x) for x in items[:n]) + (" ..." if len(items) > n else "")


def check_bills(st, orders, api, what):
    """Exactly one bill per order, with the expected body; nothing else at the fake."""
    bills = st.bills()
    missing, dups, extra, problems = compare_bills(bills, orders, api)
    check(len(bills) == len(orders), "%s: %d bills for %d eligible orders" % (
        what, len(bills), len(orders)))
    check(not missing, "%s: every eligible order has a bill (missing: %s)" % (
        what, first(missing) or "none"))
    check(not dups, "%s: no order has two bills (duplicated: %s)" % (what, first(dups) or "none"))
    check(not extra, "%s: no bill for anything else (unexpected: %s)" % (
        what, first(extra) or "none"))
    return problems


def lookups_check(st, orders, what):
    """Fresh state: one material_detail call per distinct spec_no, one store_detail call per
    distinct warehouse_no."""
    calls = st.jdy_stats()["calls"]
    specs = {d["spec_no"] for o in orders for d in o["details_list"]}
    stores = {o["warehouse_no"] for o in orders}
    check(calls["material_detail"] == len(specs),
          "%s: material_detail called %d times for %d distinct spec_nos" % (
              what, calls["material_detail"], len(specs)))
    check(calls["store_detail"] == len(stores),
          "%s: store_detail called %d times for %d distinct warehouse_nos" % (
              what, calls["store_detail"], len(stores)))


def settle(st, n, what, timeout=90):
    """Wait for the daemon to finish with n orders; check that it did and that nothing went to
    the dead-letter list. Returns the seconds it took (None on timeout)."""
    took, bills, dead = wait_settled(st, n, timeout=timeout)
    ok = check(took is not None, "%s: the daemon finished with all %d orders (%s)" % (
        what, n, "%.1fs" % took if took is not None else
        "timeout after %ds: %d orders with a bill, %d dead" % (timeout, bills, dead)))
    ok = check(dead == 0, "%s: no dead letters (%d)" % (what, dead)) and ok
    if dead:
        print("# wdt2jdyctl dlq list:\n# " + st_dlq(st))
    fail_log(st, ok)
    timings.append((what + " settle", took if took is not None else -1))
    return took


def scenario(fn):
    """Run one scenario; an exception counts as a failed check, and the stack is closed."""
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
            close_stack(st)
    timings.append((name, time.monotonic() - t))


def fail_log(st, ok):
    if not ok:
        print("# daemon log tail:\n# " + log_tail(st).replace("\n", "\n# "))


# ---- 1 + 3: v1 bodies, date fallbacks, lookups -------------------------------------------

def v1_bodies(h):
    st = h["stack"] = e2e_stack(85, seed=11)
    base = st.eligible()
    # Bill date fallbacks: four extra orders in the polled range, each with its dates on
    # distinct days so that the source of the bill date is visible.
    t = base[0]
    mod = t["modified"]
    mod_epoch = wjfake.parse_wdt_time(mod)
    day_before = wjfake.wdt_time(mod_epoch - 86400)
    two_before = wjfake.wdt_time(mod_epoch - 2 * 86400)
    extra = [
        # stockin_time absent, check_time empty → modified
        derived_order(t, 1, mod, stockin_time=None, check_time=""),
        # stockin_time zero (WDT's "not set") → check_time
        derived_order(t, 2, mod, stockin_time="0000-00-00 00:00:00", check_time=day_before),
        # stockin_time empty → check_time
        derived_order(t, 3, mod, stockin_time="", check_time=two_before),
        # both zero → modified
        derived_order(t, 4, mod, stockin_time="0000-00-00 00:00:00",
                      check_time="0000-00-00 00:00:00"),
    ]
    r = st.wdt.admin_post("/admin/orders", {"orders": extra})
    check(r.get("inserted") == len(extra), "v1: fallback orders inserted at the fake WDT")
    orders = st.eligible()
    check(50 <= len(base) <= 70, "v1: about 60 generated eligible orders (%d)" % len(base))
    st.start()
    settle(st, len(orders), "v1")
    problems = check_bills(st, orders, "v1", "v1")
    have = {b["remark"] for b in st.bills()}
    problems += ["%s: no bill" % marker(o) for o in extra if marker(o) not in have]
    plain = [p for p in problems if "RKE2E" not in p]
    check(not plain, "v1: every bill body matches its order field by field (%d problems: %s)" % (
        len(plain), first(plain) or "none"))
    fb = [p for p in problems if "RKE2E00001" in p or "RKE2E00003" in p]
    check(not fb, "v1: an absent or empty time falls back to the next one (%s)" % (
        first(fb) or "ok"))
    zero = [p for p in problems if "RKE2E00002" in p or "RKE2E00004" in p]
    check(not zero, "v1: a zero time 0000-00-00 00:00:00 counts as not set (%s)" % (
        first(zero) or "ok"))
    lookups_check(st, orders, "v1")
    stats = st.jdy_stats()
    check(stats["saves_rejected"] == 0, "v1: the fake rejected no save (%d)" % (
        stats["saves_rejected"]))


def st_dlq(st):
    p = ctl(st.cfg_path, "dlq", "list")
    return (p.stdout + p.stderr).strip().replace("\n", "\n# ")


# ---- 2 + 3: v2 bodies, lookups -------------------------------------------------------------

def v2_bodies(h):
    st = h["stack"] = e2e_stack(85, seed=12, kingdee_api="v2")
    orders = st.eligible()
    st.start()
    settle(st, len(orders), "v2")
    problems = check_bills(st, orders, "v2", "v2")
    check(not problems, "v2: every bill body matches its order field by field (%d problems: %s)"
          % (len(problems), first(problems) or "none"))
    stats = st.jdy_stats()
    check(stats["calls"]["save_v2"] >= len(orders) and stats["calls"]["save_v1"] == 0,
          "v2: saves go to the v2 endpoint only")
    lookups_check(st, orders, "v2")


# ---- 4: token expiry and appSecret rotation -------------------------------------------------

def token_rotation(mode, n_orders, min_secs, min_logins, h):
    what = "token (%s expiry)" % mode
    st = h["stack"] = e2e_stack(
        n_orders, seed=21, wdt_args=["--eligible-pct", "100"],
        jdy_args=["--token-ttl", "3", "--secret-rotate", "4", "--expires-mode", mode,
                  "--max-saves-per-sec", "20"])
    orders = st.eligible()
    st.start()
    took = settle(st, len(orders), what, timeout=120)
    check(took is not None and took > min_secs, "%s: the run lasted more than %ds (%.1fs)" % (
        what, min_secs, took or -1))
    problems = check_bills(st, orders, "v1", what)
    check(not problems, "%s: bodies match (%s)" % (what, first(problems) or "ok"))
    stats = st.jdy_stats()
    check(stats["saves_rejected"] == 0, "%s: saves_rejected == 0 (%d)" % (
        what, stats["saves_rejected"]))
    check(stats["logins"] >= min_logins, "%s: logged in again as tokens expired: %d logins" % (
        what, stats["logins"]))
    check(stats["duplicate_remarks"] == 0, "%s: no duplicate remarks" % what)
    print("# %s: logins %d, auth_errors %d, calls %s" % (what, stats["logins"],
                                                          stats["auth_errors"], stats["calls"]))


def token_absolute(h):
    token_rotation("absolute", 250, 10, 3, h)


def token_duration(h):
    token_rotation("duration", 120, 5, 2, h)


# ---- 5: unknown outcomes --------------------------------------------------------------------

def unknown_outcomes(h):
    st = h["stack"] = e2e_stack(
        500, seed=31, wdt_args=["--eligible-pct", "100"],
        # reconcile still searches by marker: until it lists by creation time, let the
        # fake's search match remarks
        jdy_args=["--drop-after-save", "10", "--slow-after-save", "10",
                  "--slow-after-save-ms", "3000", "--search-mode", "remark"],
        kingdee__timeout="1s")
    orders = st.eligible()
    check(len(orders) == 500, "unknown: 500 eligible orders at the fake WDT (%d)" % len(orders))
    st.start()
    settle(st, len(orders), "unknown", timeout=150)
    # Late answers of slowed saves cannot add bills; give them time to arrive.
    time.sleep(1.0)
    stats = st.jdy_stats()
    bills = st.bills()
    check(len(bills) == 500, "unknown: exactly 500 bills at the fake (%d)" % len(bills))
    check(stats["duplicate_remarks"] == 0, "unknown: duplicate_remarks == 0 (%d)" % (
        stats["duplicate_remarks"]))
    missing, dups, extra, problems = compare_bills(bills, orders, "v1")
    check(not missing and not dups and not extra,
          "unknown: one bill per order (missing %d, duplicated %d, unexpected %d: %s)" % (
              len(missing), len(dups), len(extra), first(dups + missing + extra) or "none"))
    check(stats["dropped"] > 0 and stats["slowed"] > 0,
          "unknown: the fake dropped %d and slowed %d answers" % (stats["dropped"],
                                                                 stats["slowed"]))
    s = wait_status(st, lambda s: s.get("posted") == 500)
    q = s.get("queue", {})
    check(q.get("reconciled_found", 0) > 0, "unknown: status shows reconciled_found > 0 (%s)" % (
        q.get("reconciled_found")))
    check(s.get("posted") == 500, "unknown: status posted == 500 (%s)" % s.get("posted"))
    check(stats["calls"]["list_bills"] > 0, "unknown: the daemon asked Kingdee by marker")
    # Every save request that reaches the fake must be one the daemon sent (and counted):
    # no save is re-sent behind the daemon's back (e.g. by the HTTP library on a reused
    # connection that died without an answer).
    sent = sum(s.get("api_calls", {}).get("kingdee.save", {}).values())
    check(sent == stats["calls"]["save_v1"],
          "unknown: the fake received as many saves as the daemon sent (daemon %d, fake %d)" % (
              sent, stats["calls"]["save_v1"]))
    print("# unknown: dropped %d slowed %d saves %d reconciled_found %s missing %s" % (
        stats["dropped"], stats["slowed"], stats["calls"]["save_v1"], q.get("reconciled_found"),
        q.get("reconciled_missing")))


# ---- 6: a restart keeps the token ----------------------------------------------------------

def restart_token(h):
    st = h["stack"] = e2e_stack(30, seed=41)
    orders = st.eligible()
    st.start()
    settle(st, len(orders), "restart: first run")
    s1 = st.jdy_stats()
    logins = s1["logins"]
    authorize = s1["calls"]["push_app_authorize"]
    check(logins >= 1, "restart: the first run logged in (%d)" % logins)
    rc = st.daemon.stop()
    check(rc == 0, "restart: first run exits 0 on SIGTERM (got %s)" % rc)
    # New orders modified now: after the stored cursor, picked up by the second run.
    now = wjfake.wdt_time(time.time())
    new = [derived_order(orders[i], 100 + i, now, stockin_time=now, check_time=now)
           for i in range(3)]
    r = st.wdt.admin_post("/admin/orders", {"orders": new})
    check(r.get("inserted") == 3, "restart: 3 new orders at the fake WDT")
    ready_before = read(st.log).count("msg=ready")
    st.start()
    settle(st, len(orders) + 3, "restart: second run")
    stats = st.jdy_stats()
    check(stats["logins"] == logins, "restart: no new login (%d before, %d after)" % (
        logins, stats["logins"]))
    check(stats["calls"]["kingdee_auth_token"] == logins and
          stats["calls"]["push_app_authorize"] == authorize,
          "restart: no token or authorize call in the second run")
    bills = st.bills()
    missing, dups, extra, problems = compare_bills(bills, orders + new, "v1")
    check(not missing and not dups and not extra and not problems,
          "restart: every order once, bodies match (%s)" % (
              first(missing + dups + extra + problems) or "ok"))
    log = read(st.log)
    check(log.count("msg=ready") > ready_before, "restart: the daemon started again")
    check("reusing the stored token" in log, "restart: the log says the stored token is reused")
    check(st.status().get("kingdee", {}).get("logged_in") is True,
          "restart: status shows kingdee logged_in")
    check(all(marker(o) in {b["remark"] for b in bills} for o in new),
          "restart: the new orders have bills")


SCENARIOS = {
    "v1": v1_bodies,
    "v2": v2_bodies,
    "token-absolute": token_absolute,
    "token-duration": token_duration,
    "unknown": unknown_outcomes,
    "restart": restart_token,
}

only = sys.argv[1:] or list(SCENARIOS)
for name in only:
    print("# scenario %s" % name, flush=True)
    scenario(SCENARIOS[name])
for name, secs in timings:
    print("# %-28s %6.1fs" % (name, secs))
print("# total %.1fs" % (time.monotonic() - T0))
finish()
