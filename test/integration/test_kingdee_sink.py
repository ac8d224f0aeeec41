"""The Kingdee side end to end: the real daemon between the fake WDT and the fake Kingdee.

1. v1 bodies field by field (and the bill date fallbacks), 2. the same for v2, 3. one lookup
call per distinct material and store, 4. token expiry and appSecret rotation during a run
(each reading of "expires": absolute ms or s, lifetime s or ms), 5. unknown save outcomes settled
by reconciliation without duplicates, 6. a restart reuses the stored token, 7. the classic
account login of the V1 API (kingdee.auth "password"): POST login after a 405, access_token on
V1 paths only (the fake refuses the gateway signature there), V1 lists for lookups, a
short-lived token renewed after the fake refuses it; 8. an unknown account set: the login error
names the ones the login can see; 9. the gateway login where V1 paths refuse the gateway
signature: a clear error, nothing posted, nothing dead; 10. material numbers with a space,
signed in the RFC 3986 reading; 11. credentials echoed by the fake in its error answers (saves
refused under --managed) never reach the log, status.json or wdt2jdyctl's output, in both
logins; 12. wdt2jdyctl sign kingdee prints either reading."""

import sys
import time

from wjtest import check, ctl, finish, read, wait_for  # first: puts test/fake on the path
from e2e import (ACCOUNT, PASSWORD, close_stack, compare_bills, derived_order, e2e_stack,
                 log_tail, marker, password_stack, run_scenario, wait_settled,
                 wait_status)
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
    run_scenario(fn, timings)


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


def token_absolute_s(h):
    token_rotation("absolute-s", 120, 5, 2, h)


def token_duration_ms(h):
    # "3000" ms reads as 50 min (nearer a day than 3 s): the daemon learns of the expiry from
    # the refusal and logs in again
    token_rotation("duration-ms", 120, 5, 2, h)


# ---- 5: unknown outcomes --------------------------------------------------------------------

def unknown_outcomes(h):
    st = h["stack"] = e2e_stack(
        500, seed=31, wdt_args=["--eligible-pct", "100"],
        jdy_args=["--drop-after-save", "10", "--slow-after-save", "10",
                  "--slow-after-save-ms", "3000"],
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


# ---- 7: the account login ------------------------------------------------------------------

def password_login(h):
    # duration-ms with a 3 s token: "3000" reads as 50 min (nearer a day than 3 s), so the
    # token dies early and the daemon learns it from the refusal: re-login once, go on.
    st = h["stack"] = password_stack(
        150, 51, wdt_args=["--eligible-pct", "100"],
        jdy_args=["--v1-login", "post", "--v1-gateway", "no", "--token-ttl", "3",
                  "--expires-mode", "duration-ms", "--max-saves-per-sec", "25"])
    orders = st.eligible()
    st.start()
    took = settle(st, len(orders), "password")
    problems = check_bills(st, orders, "v1", "password")
    check(not problems, "password: bodies match (%s)" % (first(problems) or "ok"))
    check(took is not None and took > 4, "password: the run outlasted the token (%.1fs)" % (
        took or -1))
    s = st.jdy_stats()
    c = s["calls"]
    check(c["push_app_authorize"] == 0 and c["kingdee_auth_token"] == 0,
          "password: no gateway login (%s)" % c)
    check(c["v1_login"] >= 3 and c["v1_account_groups"] >= 2,
          "password: logged in again as tokens died (%d logins)" % c["v1_login"])
    check(c["material_detail"] == 0 and c["store_detail"] == 0 and c["v1_material_list"] > 0 and
          c["v1_store_list"] > 0, "password: lookups through the V1 lists (%s)" % c)
    check(s["sig_errors"] == 0 and s["saves_rejected"] == 0,
          "password: no signature error, no save refused")
    log = read(st.log)
    check("using POST" in log, "password: the login fell back to POST after the 405")
    check("token refused, logging in again" in log, "password: re-login after a refusal")
    check(PASSWORD not in log, "password: the password is not in the log")


# ---- 8: an account set the login cannot see ------------------------------------------------

def unknown_account(h):
    st = h["stack"] = password_stack(20, 52, account="42")
    st.start()
    want = ("account set 42 is not among the account sets of this login; this login sees: "
            "%s (g-test, 测试账套), 9000000000000000002 (g-other, 另一个账套)" % ACCOUNT)
    ok = wait_for(lambda: want in read(st.log), timeout=20)
    check(ok, "unknown account: the log names the account sets the login can see")
    s = wait_for(lambda: want in (st.status().get("last_error") or ""), timeout=20)
    check(s, "unknown account: status.json's last_error says the same (%s)" % (
        st.status().get("last_error")))
    out = ctl(st.cfg_path, "status").stdout
    check("42 is not among the account sets" in out, "unknown account: wdt2jdyctl status says so")
    check(not st.bills(), "unknown account: nothing posted")
    check(st.state().get("dead", -1) == 0, "unknown account: nothing dead")


# ---- 9: gateway signature refused on V1 paths ----------------------------------------------

def v1_gateway_refused(h):
    st = h["stack"] = e2e_stack(20, seed=53, jdy_args=["--v1-gateway", "no"])
    st.start()
    ok = wait_for(lambda: "access_token" in (st.status().get("last_error") or ""), timeout=30)
    check(ok, "v1-gateway no: the error names the account login (%s)" % (
        st.status().get("last_error")))
    check(not st.bills(), "v1-gateway no: nothing posted")
    check(st.state().get("dead", -1) == 0, "v1-gateway no: nothing dead (orders wait)")
    check(st.jdy_stats()["calls"]["material_detail"] > 0,
          "v1-gateway no: the V2 lookups still work")


# ---- 10: numbers with a space ---------------------------------------------------------------

def spaced_numbers(h):
    mats = {"SP%05d" % i: "SP %05d" % i for i in range(1, 501)}
    st = h["stack"] = e2e_stack(60, seed=54, kingdee__material_map=mats)
    orders = st.eligible()
    st.start()
    settle(st, len(orders), "space")
    problems = check_bills(st, orders, "v1", "space")
    check(not problems, "space: bodies match (%s)" % (first(problems) or "ok"))
    s = st.jdy_stats()
    check(s["sig_errors"] == 0, "space: every signature accepted (%d refused)" % s["sig_errors"])
    check(s["calls"]["material_detail"] > 0, "space: looked up by the spaced numbers")


# ---- 11: credentials echoed in error answers ------------------------------------------------

def leaks(st, secrets):
    """Where any secret shows: log, status.json, wdt2jdyctl status / dlq list / dlq show."""
    texts = {"log": read(st.log), "status.json": read(st.status_path),
             "ctl status": ctl(st.cfg_path, "status").stdout,
             "ctl status --json": ctl(st.cfg_path, "status", "--json").stdout,
             "ctl dlq list": ctl(st.cfg_path, "dlq", "list").stdout}
    for line in texts["ctl dlq list"].splitlines()[:5]:
        no = line.split()[0] if line.split() else ""
        if no.startswith("RK"):
            texts["ctl dlq show " + no] = ctl(st.cfg_path, "dlq", "show", no).stdout
    return sorted({where for where, text in texts.items()
                   for s in secrets if s and s in text})


# The default mapping without the fields a managed material or store needs, so that --managed
# refuses the saves instead of the mapping parking the orders.
WITHHOLD = {"extends": "default", "lines": {k: None for k in (
    "spid_id", "batchno", "kfdate", "kfperiod", "kftype", "validdate")}}


def echoed(st, what, extra_secrets):
    """--managed refuses the saves of lines of batch or shelf-life materials (the mapping
    withholds those fields): their errors echo the token."""
    orders = st.eligible()
    took, bills, dead = wait_settled(st, len(orders), timeout=60)
    check(took is not None and dead > 0, "%s: orders refused by the fake are dead (%d)" % (
        what, dead))
    check("received: " in read(st.log), "%s: the fake echoed credentials in its errors" % what)
    tokens = st.jdy.admin_get("/admin/tokens")["tokens"]
    check(len(tokens) >= 1, "%s: the fake issued tokens" % what)
    where = leaks(st, tokens + extra_secrets)
    check(not where, "%s: no token or secret in %s" % (what, ", ".join(where) or "any output"))


def echo_gateway(h):
    st = h["stack"] = e2e_stack(40, seed=55, jdy_args=["--echo-token-in-errors", "--managed"],
                                flows__0__mapping=WITHHOLD)
    st.start()
    echoed(st, "echo (gateway)", ["test-client-secret"])


def echo_password(h):
    st = h["stack"] = password_stack(40, 56, jdy_args=["--echo-token-in-errors", "--managed"],
                                     flows__0__mapping=WITHHOLD)
    st.start()
    echoed(st, "echo (password)", ["test-client-secret", PASSWORD])


# ---- 12: wdt2jdyctl sign kingdee in both readings ----------------------------------------

def sign_readings(h):
    import subprocess
    import wjfake_jdy
    from wjtest import CTL
    args = ["sign", "kingdee", "--secret", "s3cr3t", "--method", "GET", "--path",
            "/jdy/v2/bd/material_detail", "--nonce", "1", "--timestamp", "2", "number=A 01*~"]
    out = {}
    for enc in (None, "rfc3986", "form"):
        p = subprocess.run([CTL] + args[:-1] + (["--encoding", enc] if enc else []) + args[-1:],
                           capture_output=True, text=True)
        out[enc] = (p.returncode, p.stdout.strip(), p.stderr)
    q = [("number", "A 01*~")]
    want_rfc = wjfake_jdy.signature("s3cr3t", "GET", "/jdy/v2/bd/material_detail", q, "1", "2")
    want_form = wjfake_jdy.signature("s3cr3t", "GET", "/jdy/v2/bd/material_detail", q, "1", "2",
                                     form=True)
    check(out[None][:2] == (0, want_rfc) and out["rfc3986"][:2] == (0, want_rfc),
          "sign: the default is the RFC 3986 reading the daemon sends")
    check(out["form"][:2] == (0, want_form) and want_form != want_rfc,
          "sign: --encoding form prints the Java SDK's reading")
    check("number=A%2B01*%257E" in out["form"][2] and "number=A%252001%252A~" in out[None][2],
          "sign: the string to sign shows each reading")
    p = subprocess.run([CTL] + args[:-1] + ["--encoding", "latin1"] + args[-1:],
                       capture_output=True, text=True)
    check(p.returncode != 0 and "rfc3986 or form" in p.stderr, "sign: an unknown encoding refused")


SCENARIOS = {
    "v1": v1_bodies,
    "v2": v2_bodies,
    "token-absolute": token_absolute,
    "token-duration": token_duration,
    "token-absolute-s": token_absolute_s,
    "token-duration-ms": token_duration_ms,
    "unknown": unknown_outcomes,
    "restart": restart_token,
    "password": password_login,
    "account": unknown_account,
    "v1-gateway": v1_gateway_refused,
    "space": spaced_numbers,
    "echo-gateway": echo_gateway,
    "echo-password": echo_password,
    "sign": sign_readings,
}

only = sys.argv[1:] or list(SCENARIOS)
for name in only:
    print("# scenario %s" % name, flush=True)
    scenario(SCENARIOS[name])
for name, secs in timings:
    print("# %-28s %6.1fs" % (name, secs))
print("# total %.1fs" % (time.monotonic() - T0))
finish()
