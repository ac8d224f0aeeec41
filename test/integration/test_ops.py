"""The operator surface against a state produced by a real run: status.json and the metrics
file carry the counts the fakes report; every wdt2jdyctl subcommand works, also while the
daemon runs (dlq retry/drop, review, cursor, backfill), and its actions are written to the
daemon's log (who, what); sign reproduces API.md's vectors.

The read-only commands (status, dlq list/show, review list/show, cursor show) then work
without the secrets, with a configuration that does not validate (stderr says so), and with
--state-dir alone; they never create a state. Unknown arguments are errors, every list has
--json, human output shows times (never epoch numbers), dlq drop --all wants --yes."""

import json
import os
import re
import shutil
import subprocess
import time

from wjtest import CTL, check, ctl, finish, read, read_metrics, wait_for, write_config
from e2e import close_stack, e2e_stack, wait_settled
import wjfake


def ctl_raw(*args):
    return subprocess.run([CTL] + list(args), capture_output=True, text=True, timeout=120)


def read_only(st, dead):
    """The read-only commands need only the paths: no secrets, a broken file, or none."""
    state = st.cfg["state_dir"]
    reads = [["status"], ["dlq", "list"], ["review", "list"], ["cursor", "show"],
             ["dlq", "show", dead[0]], ["status", "--json"], ["dlq", "list", "--json"]]

    def all_work(how, *pre, quiet=True):
        for args in reads:
            p = ctl_raw(*(list(pre) + args))
            ok = p.returncode == 0 and p.stdout and (not quiet or not p.stderr)
            if not ok:
                print("# %s: rc %d\n%s%s" % (args, p.returncode, p.stdout[:300], p.stderr[:300]))
            check(ok, "%s: wdt2jdyctl %s works" % (how, " ".join(args)))
        return p

    # the secrets as credentials, without $CREDENTIALS_DIRECTORY: the daemon could not start
    cfg = json.loads(json.dumps(st.cfg))
    cfg["wdt"].pop("app_secret")
    cfg["wdt"]["app_secret_credential"] = "wdt-app-secret"
    cfg["kingdee"].pop("client_secret")
    cfg["kingdee"]["client_secret_file"] = os.path.join(st.tmp, "no-such-secret")
    nosecret = os.path.join(st.tmp, "nosecret.json")
    write_config(nosecret, cfg)
    check(ctl_raw("-c", nosecret, "check-config").returncode == 78,
          "without its secrets the configuration does not load for the daemon")
    all_work("no secrets", "-c", nosecret)
    check(ctl_raw("-c", nosecret, "dlq", "retry", dead[0]).returncode == 78,
          "no secrets: an operator action still needs the whole configuration")

    # a configuration that does not validate
    cfg = json.loads(json.dumps(st.cfg))
    cfg["kingdee"]["concurrency"] = "many"
    cfg["no_such_key"] = 1
    broken = os.path.join(st.tmp, "broken.json")
    write_config(broken, cfg)
    p = all_work("broken configuration", "-c", broken, quiet=False)
    check("does not validate" in p.stderr and "no_such_key" in p.stderr,
          "broken configuration: stderr says so (%s)" % p.stderr.strip()[:200])
    check(ctl_raw("-c", broken, "dlq", "drop", dead[0]).returncode == 78,
          "broken configuration: an operator action is refused with 78")

    # --state-dir alone; a file that is not even JSON is passed over
    all_work("--state-dir alone", "--state-dir", state)
    p = ctl_raw("--state-dir", state, "cursor", "show")
    check(p.stdout.startswith("pd-gain 20"), "--state-dir alone: the flows come from the state")
    garbage = os.path.join(st.tmp, "garbage.json")
    with open(garbage, "w") as f:
        f.write("{ not json\n")
    all_work("not JSON, with --state-dir", "-c", garbage, "--state-dir", state, quiet=False)
    check(ctl_raw("-c", garbage, "status").returncode == 78,
          "not JSON, without --state-dir: exit 78")
    p = ctl_raw("dlq", "list", "--state-dir", state, "--json")
    check(p.returncode == 0 and len(json.loads(p.stdout)) == len(dead),
          "--state-dir after the command too")
    check(ctl_raw("--state-dir", state, "dlq", "retry", dead[0]).returncode == 1,
          "--state-dir is refused for an operator action")

    # times in the configured zone: +00:00 shows the same cursor 8 hours earlier
    cfg = json.loads(json.dumps(st.cfg))
    cfg["timezone"] = "+00:00"
    utc = os.path.join(st.tmp, "utc.json")
    write_config(utc, cfg)
    a = ctl_raw("-c", st.cfg_path, "cursor", "show", "--json")
    b = ctl_raw("-c", utc, "cursor", "show", "--json")
    ta, tb = json.loads(a.stdout)[0]["cursor"], json.loads(b.stdout)[0]["cursor"]
    check(time.mktime(time.strptime(ta, "%Y-%m-%d %H:%M:%S")) -
          time.mktime(time.strptime(tb, "%Y-%m-%d %H:%M:%S")) == 8 * 3600,
          "times are shown in the configured zone (%s at +08:00, %s at +00:00)" % (ta, tb))

    # a state that does not exist: a clear error, exit 73, nothing created
    missing = os.path.join(st.tmp, "missing", "state")
    for args in reads:
        p = ctl_raw("--state-dir", missing, *args)
        check(p.returncode == 73 and "no state in" in p.stderr,
              "missing state: wdt2jdyctl %s exits 73 (%s)" % (" ".join(args), p.stderr.strip()))
    check(not os.path.exists(os.path.join(st.tmp, "missing")), "missing state: nothing created")
    cfg = json.loads(json.dumps(st.cfg))
    cfg["state_dir"] = missing
    other = os.path.join(st.tmp, "other.json")
    write_config(other, cfg)
    p = ctl_raw("-c", other, "status")
    check(p.returncode == 73 and not os.path.exists(os.path.join(st.tmp, "missing")),
          "missing state named by the configuration: exit 73, nothing created")
    shutil.rmtree(os.path.join(st.tmp, "missing"), ignore_errors=True)


st = e2e_stack(300, span_days=3, seed=606, wdt_args=["--bad-pct", "10"])
st.cfg["status"]["metrics_file"] = os.path.join(st.tmp, "wdt2jdy.prom")
st.write()
cfg = st.cfg_path
try:
    elig = st.eligible()
    bad = [o for o in elig if str(o.get("remark", "")).startswith("BAD:")]
    st.start()
    took, nb, nd = wait_settled(st, len(elig), timeout=300)
    check(took is not None and nd == len(bad), "run settled: %d bills, %d dead letters" % (nb, nd))

    # status.json and metrics carry what the fakes report
    stats = st.jdy_stats()
    s = wait_for(lambda: (lambda x: x if x.get("posted") == nb else None)(st.status()), timeout=10)
    check(s and s["posted"] == stats["bills"] == nb, "status.json posted = bills at the fake (%s)"
          % (s or {}).get("posted"))
    check(s and s["dead"] == len(bad), "status.json dead = invalid orders")
    check(s and s["api_calls"]["kingdee.save"]["ok"] == stats["saves_ok"],
          "status.json kingdee.save ok = the fake's saves_ok (%s)" % stats["saves_ok"])
    # the poller keeps polling each second: compare between two polls
    check(wait_for(lambda: st.status()["api_calls"]["wdt.query"]["ok"] ==
                   st.wdt.admin_get("/admin/stats")["ok"], timeout=20, step=0.1),
          "status.json wdt.query ok = the fake WDT's ok calls")
    m = read_metrics(st.cfg["status"]["metrics_file"])
    check(m.get("wdt2jdy_bills_posted_total") == nb, "metrics: bills_posted_total = bills")
    check(m.get("wdt2jdy_dead_letters") == len(bad), "metrics: dead_letters = dead")
    check(m.get('wdt2jdy_api_calls_total{endpoint="kingdee.save",outcome="ok"}') ==
          stats["saves_ok"], "metrics: api_calls_total by endpoint and outcome")
    check('wdt2jdy_flow_lag_seconds{flow="pd-gain"}' in m, "metrics: per-flow lag")

    # status (text)
    p = ctl(cfg, "status")
    check(p.returncode == 0 and "pd-gain" in p.stdout and "dead letters" in p.stdout
          and "kingdee.save" in p.stdout and "running" in p.stdout,
          "ctl status: readable table while the daemon runs")
    j = json.loads(ctl(cfg, "status", "--json").stdout)
    check(j["dead"] == len(bad) and j["queue"]["ready"] == 0, "ctl status --json")

    # dead letters
    p = ctl(cfg, "dlq", "list")
    check(p.returncode == 0 and all(o["stockin_no"] in p.stdout for o in bad),
          "ctl dlq list: every invalid order by stockin_no")
    one = bad[0]["stockin_no"]
    p = ctl(cfg, "dlq", "show", one)
    shown = json.loads(p.stdout) if p.returncode == 0 else {}
    check(shown.get("stockin_no") == one and shown.get("reason") and shown.get("order"),
          "ctl dlq show: reason and the order")
    p = ctl(cfg, "dlq", "list", "--json")
    lst = json.loads(p.stdout) if p.returncode == 0 else []
    check(sorted(d["stockin_no"] for d in lst) == sorted(o["stockin_no"] for o in bad) and
          all(d.get("flow") == "pd-gain" and d.get("reason") and "order" not in d for d in lst),
          "ctl dlq list --json: every dead letter with flow and reason, without the payload")
    p = ctl(cfg, "dlq", "list")
    check(re.search(r"SINCE", p.stdout) and
          re.search(re.escape(one) + r"\s+\S+\s+20\d\d-\d\d-\d\d \d\d:\d\d:\d\d", p.stdout),
          "ctl dlq list: when each was parked, as a time\n" + p.stdout[:600])
    p = ctl(cfg, "dlq", "show", one)
    check(re.search(r'"ts": "20\d\d-\d\d-\d\d \d\d:\d\d:\d\d"', p.stdout),
          "ctl dlq show: its time as a time, not an epoch number")
    p = ctl(cfg, "dlq", "show", one, "--json")
    check(isinstance(json.loads(p.stdout).get("ts"), int), "ctl dlq show --json: as stored")
    for args in (["status", "--frobnicate"], ["dlq", "list", "extra"], ["dlq", "show"],
                 ["dlq", "list", "--yes"], ["review", "list", "x"], ["cursor", "show", "a", "b"],
                 ["check-config", "now"], ["review", "done"], ["dlq", "retry"],
                 ["dlq", "retry", "--all", one]):
        p = ctl(cfg, *args)
        check(p.returncode == 1 and p.stderr and not p.stdout,
              "ctl %s: refused (%s)" % (" ".join(args), p.stderr.strip()[:120]))
    p = ctl(cfg, "dlq", "drop", "--all")
    check(p.returncode == 1 and "--yes" in p.stderr and
          len(json.loads(ctl(cfg, "dlq", "list", "--json").stdout)) == len(bad),
          "ctl dlq drop --all without --yes: refused, nothing dropped")
    p = ctl(cfg, "dlq", "drop", one)
    check(p.returncode == 0 and one not in ctl(cfg, "dlq", "list").stdout, "ctl dlq drop")
    audit = [ln for ln in read(st.log).splitlines() if "mod=ctl" in ln]
    check(len(audit) == 1 and 'cmd="dlq drop"' in audit[0] and one in audit[0] and
          re.search(r" user=\S+ uid=%d " % os.getuid(), audit[0]) and
          "level=info" in audit[0],
          "audit: dlq drop written to the daemon's log with who and what: %s" % audit)
    rest = [o["stockin_no"] for o in bad[1:]]
    before = {k: v for k, v in st.state().items() if k in ("dead",)}
    p = ctl(cfg, "dlq", "retry", "--all")
    check(p.returncode == 0 and ("%d queued again" % len(rest)) in p.stdout,
          "ctl dlq retry --all while the daemon runs (%s)" % p.stdout.strip())
    audit = [ln for ln in read(st.log).splitlines() if 'cmd="dlq retry"' in ln]
    check(len(audit) == 1 and all(n in audit[0] for n in rest) and "(--all)" in audit[0],
          "audit: dlq retry --all names the orders queued again")
    # still invalid: they come back, each once, and no bill appears
    ok = wait_for(lambda: st.state().get("dead") == len(rest) and
                  st.state().get("queue", {}).get("ready", 1) == 0, timeout=30)
    check(ok and len(st.bills()) == nb, "replayed invalid orders return to the list, no bill made")
    check(ctl(cfg, "dlq", "show", "NOPE").returncode == 1, "ctl dlq show of an unknown order fails")

    # review: change an order after posting
    good = [o for o in elig if not str(o.get("remark", "")).startswith("BAD:")][0]
    changed = json.loads(json.dumps(good))
    changed["modified"] = wjfake.wdt_time(time.time())
    changed["details_list"][0]["goods_count"] = "99.0000"
    st.wdt.admin_post("/admin/orders", changed)
    ok = wait_for(lambda: good["stockin_no"] in ctl(cfg, "review", "list").stdout, timeout=30)
    check(ok, "ctl review list shows an order changed after posting")
    check(len(st.bills()) == nb, "no second bill for the changed order")
    p = ctl(cfg, "review", "show", good["stockin_no"])
    check(p.returncode == 0 and "99.0000" in p.stdout, "ctl review show: the new content")
    rl = json.loads(ctl(cfg, "review", "list", "--json").stdout or "[]")
    check([r.get("stockin_no") for r in rl] == [good["stockin_no"]] and
          rl[0].get("flow") == "pd-gain", "ctl review list --json")
    check(not re.search(r"\b1[6-9]\d{8}\b", ctl(cfg, "review", "list").stdout +
                        ctl(cfg, "review", "show", good["stockin_no"]).stdout),
          "ctl review list/show: no epoch number in human output")
    p = ctl(cfg, "review", "done", good["stockin_no"])
    check(p.returncode == 0 and good["stockin_no"] not in ctl(cfg, "review", "list").stdout,
          "ctl review done")
    check(any('cmd="review done"' in ln and good["stockin_no"] in ln
              for ln in read(st.log).splitlines()), "audit: review done")

    # cursor
    p = ctl(cfg, "cursor", "show")
    check(p.returncode == 0 and p.stdout.startswith("pd-gain 20"), "ctl cursor show (%s)"
          % p.stdout.strip())
    cj = json.loads(ctl(cfg, "cursor", "show", "--json").stdout or "[]")
    check(len(cj) == 1 and cj[0]["flow"] == "pd-gain" and cj[0]["started"] and
          re.match(r"20\d\d-\d\d-\d\d \d\d:\d\d:\d\d$", cj[0]["cursor"]),
          "ctl cursor show --json")
    check(ctl(cfg, "cursor", "show", "nope").returncode == 1, "ctl cursor show of an unknown flow")
    p = ctl(cfg, "cursor", "set", "pd-gain", "2001-01-01 00:00:00x")
    check(p.returncode == 1 and "expected a time" in p.stderr, "ctl cursor set refuses a bad time")

    # backfill the whole period again while running: nothing new, nothing duplicated
    p = ctl(cfg, "backfill", "pd-gain", "--from", st.start_arg,
            "--to", wjfake.wdt_time(time.time() - 60))
    check(p.returncode == 0 and "done" in p.stdout, "ctl backfill runs to completion (%s)"
          % p.stdout.strip().splitlines()[-1:])
    check(len(st.bills()) == nb and st.jdy_stats().get("duplicate_remarks") == 0,
          "backfill re-read everything and made no new bill")
    check("backfill finished" in read(st.log), "the daemon logs the end of the backfill")
    check(any('cmd=backfill' in ln and "queued" in ln and "pd-gain" in ln
              for ln in read(st.log).splitlines()), "audit: backfill")

    p = ctl(cfg, "check-config")
    check(p.returncode == 0 and p.stdout.strip() == "configuration OK", "ctl check-config")
    check(st.close() == 0, "daemon exits 0")
    p = ctl(cfg, "status")
    check(p.returncode == 0 and "stopped" in p.stdout, "ctl status works on a stopped daemon")
    read_only(st, rest)
    at = json.loads(ctl(cfg, "cursor", "show", "--json").stdout)[0]["cursor"]
    p = ctl(cfg, "cursor", "set", "pd-gain", at)
    check(p.returncode == 0 and any('cmd="cursor set"' in ln and at in ln
                                    for ln in read(st.log).splitlines()),
          "audit: cursor set, also while the daemon is stopped")
finally:
    close_stack(st)

# ---- sign: API.md vectors ------------------------------------------------------------------
import subprocess  # noqa: E402


def sign(*args):
    return subprocess.run([CTL, "sign"] + list(args), capture_output=True, text=True).stdout.strip()


check(sign("qimen", "--secret", "testsecret", "app_key=12345678", "end_time=2024-01-01 12:00:00",
           "format=json", "method=wdt.stockin.order.query", "order_type=4", "page_no=0",
           "page_size=40", "sid=test2", "sign_method=md5", "start_time=2024-01-01 00:00:00",
           "target_app_key=21363512", "timestamp=2024-01-01 12:00:00", "v=2.0")
      == "EAE9CFE97298369077F4B47732AEF272", "ctl sign qimen reproduces the vector")
check(sign("openapi2", "--secret", "12345", "appkey=test2-xx", "end_time=2016-08-01 13:00:00",
           "page_no=0", "page_size=40", "sid=test2", "start_time=2016-08-01 12:00:00",
           "timestamp=1470042310") == "ad4e6fe037ea6e3ba4768317be9d1309",
      "ctl sign openapi2 reproduces the vector")
check(sign("kingdee", "--secret", "f2adcfef73369bfc4e1384677d38a0ff", "--method", "GET", "--path",
           "/jdyconnector/app_management/kingdee_auth_token", "--nonce", "4427456950",
           "--timestamp", "1670305063559", "app_key=bVZgAZOv1",
           "app_signature=MzZlYTk0ODk4MWZlNjdiODNmNWU4YzViNzYxNGM5MTFlOGJkN2NjMzk0MTJkZGNhZGM0NzZhN2YxZDJmOTlkZA==")
      == "OTFiZTliNDFiMjNkYTI3YzVhNzg4MDI4ZGU3MWY1ZTA5ZTk1NjVlNGM1YTI1ZjIxY2Y5YTA3ZGY2OGI1MGQ1MQ==",
      "ctl sign kingdee reproduces the vector")
check(sign("kingdee-app", "--app-key", "abc", "--app-secret", "abc123") ==
      "ZDljMTI3NGIyNTE1MTRkYzlkNjc1MDNhYjUzMzgzNWMyY2M4YTdjMzdmNmM3YTVlNDkxMTkzNjdiOTFjNzUyZQ==",
      "ctl sign kingdee-app reproduces the vector")
finish()
