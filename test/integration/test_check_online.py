"""`wdt2jdyctl check --online` and the daemon's start-up check, against the fakes.

1. every step passes (gateway login), with the numbers given or taken from the maps; nothing
   is written anywhere (the state directory, which does not exist, still does not; the
   temporary directory holds the same files); no numbers: the lookups are skipped and pass;
2. failures, each on its own step with the service's text: a wrong client secret, a wrong
   password, an unknown account set (the text lists those the login sees), an unknown
   material, WDT refusing the signature; no secret in the output even when the fake quotes
   the credentials in its errors; a bad configuration exits 78;
3. WDT's clock 20 minutes ahead: the query is asked again in WDT's time and the offset shown;
4. the daemon started with a wrong Kingdee secret: status "degraded" naming the step, an
   alert reaches the receiver; the configuration fixed and reloaded (SIGHUP): "running", the
   check passes again;
5. the daemon started while Kingdee answers its login with 503: degraded; once Kingdee is
   back, the check's own retry (no reload) ends it;
6. a restart after the Kingdee password was changed to a wrong one: the token kept in the
   state is not reused for another login, so the start is degraded at once (not when the old
   token expires, hours later)."""

import os
import signal
import sys

from wjtest import check, ctl, read, wait_for, write_config
from e2e import close_stack, e2e_stack, run_scenarios, wait_status
from alert_receiver import Receiver
from hostile import Proxy

ACCOUNT = "1584244570835057173"
PASSWORD = "test-password"


def step(out, name):
    """(outcome, detail) of one step's line, ("", "") when absent."""
    for line in out.splitlines():
        if line.startswith(name + " "):
            rest = line[len(name):].strip()
            for word in ("NOT RUN", "OK", "FAILED", "SKIPPED", "-"):
                if rest.startswith(word):
                    return word, rest[len(word):].strip()
    return "", ""


def listing(root):
    """Every path below root (files and directories)."""
    out = set()
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def run_check(st, *args):
    st.write()
    p = ctl(st.cfg_path, "check", "--online", *args)
    return p.returncode, p.stdout, p.stderr


def password(st, **over):
    k = st.cfg["kingdee"]
    k.pop("outer_instance_id", None)
    k.update(auth="password", username="test-user", password=PASSWORD, account_id=ACCOUNT)
    k.update(over)


# ---- 1 --------------------------------------------------------------------------------------

def all_pass(h):
    st = h["stack"] = e2e_stack(5)
    before = listing(st.tmp)
    rc, out, err = run_check(st, "--material", "SP00001", "--store", "WH02")
    check(rc == 0, "pass: exit 0 (%s%s)" % (out, err))
    for name in ("wdt query", "kingdee login", "kingdee token", "kingdee material",
                 "kingdee store"):
        check(step(out, name)[0] == "OK", "pass: %s OK (%r)" % (name, step(out, name)))
    check(step(out, "kingdee account set")[0] == "SKIPPED",
          "pass: gateway login: the account set step is skipped, the instance is it")
    check(step(out, "kingdee material")[1] == "SP00001: id M1, base unit U2",
          "pass: the material line shows the Kingdee ids (%r)" % step(out, "kingdee material")[1])
    check(step(out, "kingdee store")[1] == "WH02: id S02", "pass: the store line")
    check("wdt.stockin.order.query" in step(out, "wdt query")[1], "pass: the query is named")
    check("WDT's clock minus this host's" in out, "pass: the clock offset to WDT is shown")
    check(not os.path.exists(st.cfg["state_dir"]), "pass: the state directory is not created")
    check(listing(st.tmp) == before, "pass: no file or directory created (%s)" % (
        listing(st.tmp) - before))
    calls = st.jdy_stats()["calls"]
    check(calls["save_v1"] == 0 and calls["save_v2"] == 0, "pass: nothing saved")

    st.cfg["kingdee"]["material_map"] = {"SP1": "SP00007"}
    st.cfg["kingdee"]["store_map"] = {"W1": "CK001"}
    rc, out, err = run_check(st)
    check(rc == 0 and step(out, "kingdee material")[1] == "SP1 → SP00007: id M7, base unit U2",
          "maps: the first material_map entry is looked up (%r)" % step(out, "kingdee material")[1])
    check(step(out, "kingdee store")[1] == "W1 → CK001: id S99", "maps: the first store_map entry")

    del st.cfg["kingdee"]["material_map"], st.cfg["kingdee"]["store_map"]
    rc, out, err = run_check(st)
    check(rc == 0, "no numbers: exit 0 (%s)" % out)
    for name, flag in (("kingdee material", "--material"), ("kingdee store", "--store")):
        o, d = step(out, name)
        check(o == "SKIPPED" and flag in d, "no numbers: %s skipped, saying why (%r)" % (name, d))
    check(step(out, "kingdee token")[0] == "OK", "no numbers: the login and token still checked")
    check("all steps passed (3 skipped)" in out, "no numbers: the summary counts the skipped")
    check(listing(st.tmp) == before, "no numbers: still nothing written")


# ---- 2 --------------------------------------------------------------------------------------

def failures(h):
    st = h["stack"] = e2e_stack(5, jdy_args=["--echo-token-in-errors"])
    secret = st.cfg["kingdee"]["client_secret"]
    st.cfg["kingdee"]["client_secret"] = "wrong-client-secret"
    rc, out, err = run_check(st, "--material", "SP00001")
    o, d = step(out, "kingdee login")
    check(rc == 1 and o == "FAILED" and "authorize:" in d and "signature" in d,
          "wrong client secret: exit 1, the login step failed with the gateway's text (%r)" % d)
    check(step(out, "kingdee token")[0] == "NOT RUN" and step(out, "kingdee material")[0] ==
          "NOT RUN", "wrong client secret: the later Kingdee steps did not run")
    check(step(out, "wdt query")[0] == "OK", "wrong client secret: WDT still checked")
    check("wrong-client-secret" not in out + err, "wrong client secret: not printed")
    st.cfg["kingdee"]["client_secret"] = secret

    password(st, password="wrong-password-1")
    rc, out, err = run_check(st, "--material", "SP00001")
    o, d = step(out, "kingdee login")
    check(rc == 1 and o == "FAILED" and d.startswith("login: errcode"),
          "wrong password: the login step failed with Kingdee's text (%r)" % d)
    check("wrong-password-1" not in out + err and secret not in out + err,
          "wrong password: neither the password nor the secret is printed, though the fake "
          "quotes them")
    check("***" in d, "wrong password: the quoted credentials are masked (%r)" % d)

    password(st, account_id="42")
    rc, out, err = run_check(st)
    o, d = step(out, "kingdee account set")
    check(rc == 1 and o == "FAILED" and step(out, "kingdee login")[0] == "OK",
          "unknown account set: the account set step failed, the login passed")
    check("account set 42 is not among the account sets of this login" in d and ACCOUNT in d
          and "9000000000000000002" in d,
          "unknown account set: the text lists the account sets the login sees (%r)" % d)

    password(st)
    rc, out, err = run_check(st, "--material", "NOSUCH9", "--store", "WH01")
    o, d = step(out, "kingdee material")
    check(rc == 1 and o == "FAILED" and "NOSUCH9" in d,
          "unknown material: the material step failed naming it (%r)" % d)
    check(step(out, "kingdee account set") == ("OK", ACCOUNT + " (group g-test)"),
          "password login: the account set step names the group")
    check(step(out, "kingdee store")[0] == "OK", "unknown material: the store still checked")

    st.cfg["wdt"]["app_secret"] = "wrong-wdt-secret"
    rc, out, err = run_check(st, "--material", "SP00001")
    o, d = step(out, "wdt query")
    check(rc == 1 and o == "FAILED" and "sign-check-failure" in d,
          "WDT refuses the signature: the query step failed with WDT's text (%r)" % d)
    check("wrong-wdt-secret" not in out + err, "WDT refuses the signature: secret not printed")
    check("1 of 6 steps failed" in out, "WDT refuses the signature: only that step failed")

    st.cfg["wdt"]["app_secret"] = ""
    rc, out, err = run_check(st)
    check(rc == 78 and "wdt.app_secret" in err, "a bad configuration exits 78 naming the key "
          "(%d %r)" % (rc, err))


# ---- 3 --------------------------------------------------------------------------------------

def clock(h):
    st = h["stack"] = e2e_stack(5, wdt_args=["--clock-offset", "1200"])
    rc, out, err = run_check(st)
    check(rc == 0 and step(out, "wdt query")[0] == "OK",
          "WDT 20 min ahead: the query passes once asked in WDT's time (%s)" % out)
    line = [x for x in out.splitlines() if x.startswith("wdt clock")]
    off = float(line[0].split(":")[1].split()[0]) if line else 0
    check(1195 <= off <= 1205, "WDT 20 min ahead: the offset is shown (%s)" % line)


# ---- 4 --------------------------------------------------------------------------------------

def daemon(h):
    r = Receiver()
    st = h["stack"] = e2e_stack(5)
    try:
        st.cfg["alerts"] = [{"kind": "webhook", "url": r.url("hook"), "events": ["degraded"]}]
        secret = st.cfg["kingdee"]["client_secret"]
        st.cfg["kingdee"]["client_secret"] = "wrong-client-secret"
        st.write()
        st.start()
        s = wait_status(st, lambda s: s.get("state") == "degraded", timeout=30)
        check(s.get("state") == "degraded", "daemon: status says degraded (%s)" % s.get("state"))
        check("kingdee login" in (s.get("last_error") or "") and "signature" in
              (s.get("last_error") or ""),
              "daemon: last_error names the step and why (%r)" % s.get("last_error"))
        c = s.get("check") or {}
        check(c.get("state") == "failed" and "kingdee login" in (c.get("error") or "") and
              c.get("next_attempt"), "daemon: the check's record says when it tries again (%s)" % c)
        got = wait_for(lambda: [m for m in r.messages("hook") if m["event"] == "degraded"],
                       timeout=20)
        check(got and "kingdee login" in (got[0]["text"] or ""),
              "daemon: an alert went out naming the failed step (%s)" % got)
        check("wrong-client-secret" not in read(st.log) + str(s) + str(got),
              "daemon: the secret is neither logged, in the status, nor in the alert")
        check(st.daemon.alive(), "daemon: keeps running while degraded")

        st.cfg["kingdee"]["client_secret"] = secret
        st.write()
        st.daemon.signal(signal.SIGHUP)
        s = wait_status(st, lambda s: s.get("state") == "running" and
                        (s.get("check") or {}).get("state") == "passed", timeout=30)
        check(s.get("state") == "running" and s["check"]["state"] == "passed",
              "daemon: after the fix and a reload, running and the check passed (%s %s)" % (
                  s.get("state"), s.get("check")))
        check(wait_for(lambda: "start-up check passed after 1 failed attempts" in read(st.log)),
              "daemon: the recovery is logged")
        check(len([m for m in r.messages("hook") if m["event"] == "degraded"]) == 1,
              "daemon: one degraded alert for one degradation")
    finally:
        r.close()


# ---- 5 --------------------------------------------------------------------------------------

def retry(h):
    st = h["stack"] = e2e_stack(5)
    p = st.proxy = Proxy(st.jdy.url)
    p.add(lambda r: "app_management" in r.path, "status_before", status=503,
          body=b"service unavailable")
    st.cfg["kingdee"]["url"] = p.url
    st.write()
    st.start()
    s = wait_status(st, lambda s: s.get("state") == "degraded", timeout=30)
    check(s.get("state") == "degraded" and "503" in (s.get("check") or {}).get("error", ""),
          "retry: Kingdee down at start: degraded, saying why (%s)" % s.get("check"))
    p.clear()
    s = wait_status(st, lambda s: s.get("state") == "running" and
                    (s.get("check") or {}).get("state") == "passed", timeout=90)
    check(s.get("state") == "running" and s["check"]["state"] == "passed",
          "retry: Kingdee back: the next attempt passes without a reload (%s %s)" % (
              s.get("state"), s.get("check")))
    check("configuration reloaded" not in read(st.log), "retry: no reload was needed")


# ---- 6 --------------------------------------------------------------------------------------

def changed_password(h):
    st = h["stack"] = e2e_stack(5)
    password(st)
    st.write()
    st.start()
    s = wait_status(st, lambda s: (s.get("check") or {}).get("state") == "passed", timeout=30)
    check(s.get("state") == "running", "changed password: first start passes (%s)" % s.get("check"))
    check(st.daemon.stop() == 0, "changed password: stopped")
    logins = st.jdy_stats().get("v1_logins", st.jdy_stats().get("logins"))
    password(st, password="a-wrong-new-password")
    st.write()
    st.start()
    s = wait_status(st, lambda s: s.get("state") == "degraded", timeout=30)
    check(s.get("state") == "degraded" and "kingdee login" in (s.get("last_error") or ""),
          "changed password: the restart is degraded at once, naming the login (%s; logins "
          "before %s)" % (s.get("last_error"), logins))
    check("a-wrong-new-password" not in read(st.log) + str(s),
          "changed password: the new password is shown nowhere")


run_scenarios({"all_pass": all_pass, "failures": failures, "clock": clock, "daemon": daemon,
               "retry": retry, "changed_password": changed_password}, sys.argv[1:])
