"""Alerts end to end: the real daemon and wdt2jdyctl against a fake receiver that plays the
DingTalk, WeCom and Feishu robots and a plain webhook, checking their signatures.

- start and stop reach every robot, signed as each robot checks it, in Chinese by default;
- `wdt2jdyctl alert test` reports each robot, exit 0 only when all took the message;
- a robot that refuses makes `alert test` fail and name it;
- alerts_lang "en" speaks English; the robots' tokens never reach the log."""

import os
import signal

from wjtest import Daemon, base_config, check, ctl, finish, read, tempdir, wait_for, write_config
from alert_receiver import KEY, TOKEN, Receiver

SECRETS = {"ding": "SECding0123456789", "feishu": "feishu-secret-42", "hook": "hook-secret-99"}


def alerts(r):
    return [
        {"kind": "dingtalk", "url": r.url("ding"), "secret": SECRETS["ding"]},
        {"kind": "wecom", "url": r.url("wecom")},
        {"kind": "feishu", "url": r.url("feishu"), "secret": SECRETS["feishu"]},
        {"kind": "webhook", "url": r.url("hook"), "secret": SECRETS["hook"],
         "events": ["start", "stop", "dead_letter"]},
    ]


def all_ok(r, name, needle):
    return [m for m in r.messages(name) if m["ok"] and needle in (m["text"] or "")]


def events_run(r):
    """Dead letters from a backlog with bad orders (batched: the first at once, the rest as
    one message per interval with a count), the flow's lag at start, then Kingdee down."""
    import time
    import wjfake
    from e2e import close_stack, derived_order, e2e_stack, wait_settled
    st = e2e_stack(120, seed=7, span_days=2, wdt_args=["--bad-pct", "25"],
                   alerts=[{"kind": "webhook", "url": r.url("hook"),
                            "secret": SECRETS["hook"],
                            "events": ["dead_letter", "lag", "unreachable", "review"]}],
                   alerts_interval="3s", alerts_after="2s", alerts_lag="1h")
    try:
        st.start()
        elig = st.eligible()
        took, nb, nd = wait_settled(st, len(elig), timeout=120)
        check(took is not None and nd > 3, "events: the backlog settled with %d dead letters" % nd)

        def dead_msgs():
            return [m for m in r.messages("hook") if m["event"] == "dead_letter" and m["ok"]]
        wait_for(lambda: sum(m["count"] for m in dead_msgs()) >= nd, timeout=15)
        msgs = dead_msgs()
        check(sum(m["count"] for m in msgs) == nd,
              "events: the dead-letter messages count every dead letter once (%s = %d)"
              % ([m["count"] for m in msgs], nd))
        check(len(msgs) < nd and msgs[0]["count"] == 1,
              "events: the first dead letter goes out at once, later ones batched (%d messages)"
              % len(msgs))
        gaps = [b["at"] - a["at"] for a, b in zip(msgs, msgs[1:])]
        check(all(g >= 2.5 for g in gaps), "events: at most one message per interval: %s" % gaps)
        check(any("details_list" in (m["text"] or "") or "NOSUCH" in (m["text"] or "")
                  for m in msgs), "events: the messages name orders and reasons")
        lag = [m for m in r.messages("hook") if m["event"] == "lag"]
        check(len(lag) == 1 and "pd-gain" in lag[0]["text"],
              "events: one lag alert for the flow that started days behind: %r"
              % [m["text"] for m in lag])
        # a saved order changed in WDT: review; then a wrong client secret: auth failure
        good = next(o for o in elig if not (o.get("remark") or "").startswith("BAD:"))
        saved = dict(good)
        saved["details_list"] = [dict(d) for d in good["details_list"]]
        saved["details_list"][0]["goods_count"] = "999.0000"
        saved["modified"] = wjfake.wdt_time(int(time.time()) - 5)
        st.wdt.admin_post("/admin/orders", [saved])
        ok = wait_for(lambda: [m for m in r.messages("hook") if m["event"] == "review"],
                      timeout=30)
        check(ok and good["stockin_no"] in ok[0]["text"] or False,
              "events: an order changed after its bill was saved is alerted for review")
        st.cfg["alerts"][0]["events"].append("auth_failure")
        st.cfg["kingdee"]["client_secret"] = "not-the-secret"
        st.write()
        st.daemon.signal(signal.SIGHUP)
        st.wdt.admin_post("/admin/orders", [derived_order(good, 2, wjfake.wdt_time(
            int(time.time()) - 5))])
        ok = wait_for(lambda: [m for m in r.messages("hook") if m["event"] == "auth_failure"],
                      timeout=60)
        check(ok and "Kingdee" in ok[0]["text"] and "not-the-secret" not in ok[0]["text"],
              "events: refused credentials are alerted (secret not in the text)")
        # Kingdee goes away: after alerts_after without an answer, one unreachable alert
        st.jdy.stop()
        st.wdt.admin_post("/admin/orders", [derived_order(good, 3, wjfake.wdt_time(
            int(time.time()) - 5))])
        ok = wait_for(lambda: [m for m in r.messages("hook") if m["event"] == "unreachable"],
                      timeout=60)
        check(ok and "Kingdee" in ok[0]["text"], "events: Kingdee unreachable is alerted")
    finally:
        close_stack(st)


def main():
    r = Receiver(SECRETS)
    tmp = tempdir()
    cfg = base_config(tmp)
    cfg["alerts"] = alerts(r)
    cfg["alerts_interval"] = "2s"
    path = os.path.join(tmp, "wdt2jdy.json")
    write_config(path, cfg)

    # alert test: every robot, signed, exit 0
    p = ctl(path, "alert", "test")
    check(p.returncode == 0, "alert test exits 0 when every robot takes the message")
    for i, kind in enumerate(["dingtalk", "wecom", "feishu", "webhook"]):
        check(("alerts[%d] %s" % (i, kind)) in p.stdout and "OK" in p.stdout.splitlines()[i],
              "alert test reports alerts[%d] (%s) OK" % (i, kind))
    for name in ("ding", "wecom", "feishu", "hook"):
        check(len(all_ok(r, name, "测试消息")) == 1, "%s got one valid test message" % name)

    # a robot that refuses: named, exit 1
    r.fail["feishu"] = 1
    p = ctl(path, "alert", "test")
    check(p.returncode == 1, "alert test exits 1 when a robot refuses")
    check("alerts[2] feishu   FAILED: code 19021: injected failure" in p.stdout,
          "alert test names the refusing robot and its answer: %r" % p.stdout)

    # the daemon: start and stop reach every robot that takes them
    d = Daemon(path).start()
    ok = wait_for(lambda: all(all_ok(r, n, "已启动") for n in ("ding", "wecom", "feishu", "hook")),
                  timeout=20)
    check(ok, "start reached every robot, signed, in Chinese")
    hook = [m for m in r.messages("hook") if m["event"] == "start"]
    check(hook and hook[0]["count"] == 1, "the webhook body names the event and its count")
    d.signal(signal.SIGTERM)
    rc = d.proc.wait(30)
    d.stderr.close()
    check(rc == 0, "daemon exits 0")
    for n in ("ding", "wecom", "feishu", "hook"):
        check(len(all_ok(r, n, "已停止")) == 1, "stop reached %s before the daemon exited" % n)
    log = read(os.path.join(tmp, "wdt2jdy.log"))
    check(TOKEN not in log and KEY not in log and SECRETS["ding"] not in log,
          "the robots' tokens and secrets never reach the log")

    # English, and events a robot did not ask for are not sent to it
    cfg["alerts_lang"] = "en"
    cfg["alerts"][3]["events"] = ["stop"]
    write_config(path, cfg)
    before = len(r.messages("hook"))
    d = Daemon(path).start()
    check(wait_for(lambda: all_ok(r, "ding", "started"), timeout=20), "alerts_lang en: English text")
    d.stop()
    hook = r.messages("hook")[before:]
    check([m["event"] for m in hook] == ["stop"], "a webhook gets only its events: %r" %
          [m["event"] for m in hook])

    # events of a real run: dead letters batched per kind, a flow behind, Kingdee unreachable
    events_run(r)

    # bad configurations are refused with the path named
    cfg["alerts"] = [{"kind": "slack", "url": "https://x"}]
    write_config(path, cfg)
    p = ctl(path, "check-config")
    check(p.returncode == 78 and "alerts[0].kind: expected \"dingtalk\", \"wecom\", \"feishu\" or "
          "\"webhook\"" in p.stderr, "an unknown kind is refused: %r" % p.stderr)
    cfg["alerts"] = [{"kind": "wecom", "url": r.url("wecom"), "events": ["lag", "nope"]}]
    write_config(path, cfg)
    p = ctl(path, "check-config")
    check(p.returncode == 78 and "alerts[0].events[1]: expected one of" in p.stderr,
          "an unknown event is refused: %r" % p.stderr)
    r.close()
    finish()


main()
