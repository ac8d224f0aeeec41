"""The operator surface against a state produced by a real run: status.json and the metrics
file carry the counts the fakes report; every wdt2jdyctl subcommand works, also while the
daemon runs (dlq retry/drop, review, cursor, backfill); sign reproduces API.md's vectors."""

import json
import os
import time

from wjtest import CTL, check, ctl, finish, read, wait_for
from e2e import close_stack, e2e_stack, wait_settled
import wjfake


def metrics(path):
    out = {}
    for line in read(path).splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


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
    m = metrics(st.cfg["status"]["metrics_file"])
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
    p = ctl(cfg, "dlq", "drop", one)
    check(p.returncode == 0 and one not in ctl(cfg, "dlq", "list").stdout, "ctl dlq drop")
    rest = [o["stockin_no"] for o in bad[1:]]
    before = {k: v for k, v in st.state().items() if k in ("dead",)}
    p = ctl(cfg, "dlq", "retry", "--all")
    check(p.returncode == 0 and ("%d queued again" % len(rest)) in p.stdout,
          "ctl dlq retry --all while the daemon runs (%s)" % p.stdout.strip())
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
    p = ctl(cfg, "review", "done", good["stockin_no"])
    check(p.returncode == 0 and good["stockin_no"] not in ctl(cfg, "review", "list").stdout,
          "ctl review done")

    # cursor
    p = ctl(cfg, "cursor", "show")
    check(p.returncode == 0 and p.stdout.startswith("pd-gain 20"), "ctl cursor show (%s)"
          % p.stdout.strip())
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

    p = ctl(cfg, "check-config")
    check(p.returncode == 0 and p.stdout.strip() == "configuration OK", "ctl check-config")
    check(st.close() == 0, "daemon exits 0")
    p = ctl(cfg, "status")
    check(p.returncode == 0 and "not running" in p.stdout, "ctl status works on a stopped daemon")
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
