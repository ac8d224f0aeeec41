"""Truthful status: status.json, the metrics file and `wdt2jdyctl status` say what fails now.

Proxies drop every call to both services. WDT unreachable from the start (Kingdee, with no
order to post yet, is up), then answering again; then Kingdee unreachable while the orders
wait, then answering again. While a service fails, its endpoint is down
(endpoints.X.up false, wdt2jdy_endpoint_up{endpoint="X"} 0), and last_error names it with
since when and how many failures in a row; once it answers, all of that clears. Every order
still gets exactly one bill."""

import json
import os
import re

from e2e import close_stack, e2e_stack, wait_settled, wait_status
from hostile import Proxy
from wjtest import check, ctl, finish, read, read_metrics


def down(name):
    return lambda s: (s.get("endpoints", {}).get(name, {}).get("failures", 0) >= 2 and
                      s.get("last_error_count", 0) >= 2)


def up(name):
    return lambda s: (s.get("endpoints", {}).get(name, {}).get("up") is True and
                      not s.get("errors"))


st = e2e_stack(20, span_days=2, seed=707)
wp = Proxy(st.wdt.url)
jp = Proxy(st.jdy.url)
st.cfg["wdt"]["url"] = wp.url + "/router/qm"
st.cfg["kingdee"]["url"] = jp.url
st.cfg["status"]["metrics_file"] = os.path.join(st.tmp, "wdt2jdy.prom")
prom = st.cfg["status"]["metrics_file"]
st.write()
try:
    # ---- WDT unreachable from the start (the start-up check fails on it: degraded); Kingdee
    # answers (the check logs in), and there is nothing to post yet
    wp.add("/router/qm", "drop_before")
    elig = st.eligible()
    st.start()
    s = wait_status(st, down("wdt"), timeout=60)
    ep = s.get("endpoints", {}).get("wdt", {})
    check(ep.get("up") is False and ep.get("failures", 0) >= 2 and ep.get("failing_since"),
          "wdt unreachable: endpoints.wdt is down, %s failures since %s" %
          (ep.get("failures"), ep.get("failing_since")))
    # the start-up check failed on WDT: degraded, and last_error says why first
    le = s.get("last_error") or ""
    check(s.get("state") == "degraded" and le.startswith("start-up check: wdt") and
          s.get("last_error_since"),
          "wdt unreachable: degraded, last_error names the check and WDT (%s, since %s)" %
          (le, s.get("last_error_since")))
    werr = [e for e in s.get("errors", []) if e.get("source") == "wdt"]
    check(werr and werr[0].get("since") == ep.get("failing_since") and
          werr[0].get("count", 0) >= 2,
          "wdt unreachable: errors has wdt with since and count (%s)" % werr)
    srcs = {e.get("source") for e in s.get("errors", [])}
    check("wdt" in srcs and "flow pd-gain" in srcs,
          "wdt unreachable: errors lists the endpoint and the flow (%s)" % sorted(srcs))
    check(s.get("endpoints", {}).get("kingdee", {}).get("up") is True,
          "wdt unreachable: kingdee is still up")
    m = read_metrics(prom)
    check(m.get('wdt2jdy_endpoint_up{endpoint="wdt"}') == 0 and
          m.get('wdt2jdy_endpoint_up{endpoint="kingdee"}') == 1 and m.get("wdt2jdy_up") == 1,
          "wdt unreachable: metrics endpoint_up wdt 0, kingdee 1, up 1")
    check(m.get("wdt2jdy_degraded") == 1,
          "wdt unreachable: metrics degraded 1 (the start-up check failed)")
    check(m.get('wdt2jdy_flow_failures{flow="pd-gain"}', 0) >= 1,
          "wdt unreachable: metrics flow_failures counts the flow's failed windows")
    out = ctl(st.cfg_path, "status").stdout
    check(re.search(r"wdt\s+DOWN since", out) and "failures in a row" in out,
          "wdt unreachable: wdt2jdyctl status says wdt is down since when\n" + out)

    # ---- WDT answers again: its failures clear; the orders now meet Kingdee unreachable
    jp.add(lambda r: True, "drop_before")
    wp.clear()

    def wdt_back(s):
        srcs = {e.get("source") for e in s.get("errors", [])}
        return (s.get("endpoints", {}).get("wdt", {}).get("up") is True and
                not srcs & {"wdt", "flow pd-gain"})
    s = wait_status(st, wdt_back, timeout=60)
    check(wdt_back(s) and s.get("endpoints", {}).get("wdt", {}).get("error") is None and
          s.get("endpoints", {}).get("wdt", {}).get("failing_since") is None,
          "wdt back: endpoint up, neither it nor the flow among the current errors")
    check(not (s.get("last_error") or "").startswith("wdt"),
          "wdt back: last_error no longer names wdt (%s)" % s.get("last_error"))
    check("api=wdt msg=\"answers again" in read(st.log),
          "wdt back: the log says it answers again")
    m = read_metrics(prom)
    check(m.get('wdt2jdy_endpoint_up{endpoint="wdt"}') == 1 and
          m.get('wdt2jdy_flow_failures{flow="pd-gain"}') == 0,
          "wdt back: metrics endpoint_up wdt 1, flow_failures 0")

    # ---- Kingdee unreachable while the orders wait
    s = wait_status(st, down("kingdee"), timeout=60)
    ep = s.get("endpoints", {}).get("kingdee", {})
    check(ep.get("up") is False and ep.get("failures", 0) >= 2,
          "kingdee unreachable: endpoints.kingdee down (%s failures)" % ep.get("failures"))
    # while the start-up check has not passed yet, its failure comes first in last_error
    le = s.get("last_error") or ""
    kerr = [e for e in s.get("errors", []) if e.get("source") == "kingdee"]
    check((le.startswith("kingdee: ") or (s.get("state") == "degraded" and
                                          le.startswith("start-up check: "))) and
          s.get("last_error_since") and kerr and kerr[0].get("since"),
          "kingdee unreachable: last_error and errors say so (%s; %s)" % (le, kerr))
    check(s.get("kingdee", {}).get("unreachable") is True,
          "kingdee unreachable: kingdee.unreachable too")
    m = read_metrics(prom)
    check(m.get('wdt2jdy_endpoint_up{endpoint="kingdee"}') == 0 and
          m.get('wdt2jdy_endpoint_failures{endpoint="kingdee"}', 0) >= 2,
          "kingdee unreachable: metrics endpoint_up 0, failures counted")
    j = json.loads(ctl(st.cfg_path, "status", "--json").stdout or "{}")
    check(j.get("daemon", {}).get("endpoints", {}).get("kingdee", {}).get("up") is False,
          "kingdee unreachable: wdt2jdyctl status --json carries it")

    jp.clear()
    took, nb, nd = wait_settled(st, len(elig), timeout=120)
    check(took is not None and nb == len(elig) and nd == 0,
          "kingdee back: every order got its bill (%d of %d)" % (nb, len(elig)))
    check(st.jdy_stats().get("duplicate_remarks") == 0, "kingdee back: no bill twice")
    s = wait_status(st, up("kingdee"), timeout=30)
    check(s.get("endpoints", {}).get("kingdee", {}).get("up") is True and not s.get("errors")
          and s.get("last_error") is None and s.get("state") == "running",
          "kingdee back: endpoint up, last_error cleared, running (%s, %s, %s)"
          % (s.get("state"), s.get("last_error"), s.get("errors")))
    m = read_metrics(prom)
    check(m.get('wdt2jdy_endpoint_up{endpoint="kingdee"}') == 1 and
          m.get("wdt2jdy_degraded") == 0, "kingdee back: metrics endpoint_up 1, degraded 0")
    check("test-client-secret" not in read(st.status_path), "no secret in the status")
finally:
    wp.close()
    jp.close()
    close_stack(st)
finish()
