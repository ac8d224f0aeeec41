"""WDT readings end to end: the real daemon against the fake WDT under each reading of
total_count (page 0 only, every page, 0, null, never), with pages that carry bare out-of-range
numbers, and with orders whose stockin_id cannot key them. Every valid order becomes one bill;
the bad ones are parked with a reason naming the problem; no window is read over and over."""

import json

from e2e import (close_stack, compare_bills, derived_order, e2e_stack, log_tail, password_stack,
                 wait_settled)
from wjtest import check, ctl, finish, wait_for
import wjfake


def cursor_of(st):
    c = st.state().get("cursors", {}).get("pd-gain")
    return c["cursor"] if c else 0


# ---- every reading of total_count ------------------------------------------------------------
# 3 days of orders read in 1-day windows of several 15-order pages, over both WDT transports
# and the three ways to Kingdee: V1 with the gateway, V1 with the account login, V2.
for reading, api, kd in (("page0", "qimen", "v1"), ("page0", "openapi2", "v2"),
                         ("page0", "qimen", "password"), ("always", "qimen", "v1"),
                         ("zero", "qimen", "password"), ("null", "openapi2", "v2"),
                         ("none", "qimen", "v1")):
    opts = dict(span_days=3, seed=71, wdt_args=["--total-count", reading],
                flows__0__cursor__page_size=15)
    if kd == "password":
        st = password_stack(160, **opts)
    else:
        st = e2e_stack(160, kingdee_api=kd, **opts)
    api_kd = "v2" if kd == "v2" else "v1"
    if api == "openapi2":
        st.cfg["wdt"]["api"] = "openapi2"
        st.cfg["wdt"]["url"] = st.wdt.url + "/openapi2/"
        st.write()
    try:
        elig = st.eligible()
        st.start()
        took, nb, nd = wait_settled(st, len(elig), timeout=90)
        missing, dups, extra, problems = compare_bills(st.bills(), elig, api_kd)
        check(took is not None and not missing and not dups and not extra and not problems,
              "total_count %s (%s + %s): %d eligible orders, %d bills, missing %s, duplicated "
              "%s, bodies %s" % (reading, api, kd, len(elig), nb, missing[:3], dups[:3],
                                  problems[:2]))
        fl = st.status().get("flows", [{}])[0]
        stats = st.wdt.admin_get("/admin/stats")
        # 160 orders over 3+2 days in 15-order pages: about 20 pages, a change query per
        # window of several pages, and nothing read over and over
        check(fl.get("rereads", 99) == 0 and stats["calls"] < 60,
              "total_count %s (%s): no window read again (rereads %s, %d WDT calls)"
              % (reading, api, fl.get("rereads"), stats["calls"]))
        if reading != "page0":
            check("total_count" not in log_tail(st, 200),
                  "total_count %s (%s): nothing to say about the count" % (reading, api))
        check(close_stack(st) == 0, "total_count %s (%s): daemon exits 0" % (reading, api))
    finally:
        close_stack(st)

# ---- bare out-of-range numbers and unusable stockin_ids ---------------------------------------
st = e2e_stack(40, span_days=2, seed=72)
try:
    good = st.eligible()
    t0 = good[len(good) // 2]
    at = t0["modified"]  # all in one window, on one page with valid orders
    line = t0["details_list"][0]
    bad_line = dict(line, goods_count="@@raw:1e400")
    injected = [
        # a mapped number out of range: parked by the mapping, naming number and field
        derived_order(t0, 1, at, details_list=[bad_line]),
        # an unmapped field out of range, as a bare token: posted as usual
        derived_order(t0, 2, at, flag_id="@@raw:99999999999999999999",
                      details_list=[dict(line, num2="@@raw:-1e999")]),
    ]
    bad_ids = {"RKE2E00003": "@@raw:99999999999999999999",  # bare, beyond 64 bits
               "RKE2E00004": None,                          # missing
               "RKE2E00005": "",                            # empty
               "RKE2E00006": "12\n34",                      # a control character
               "RKE2E00007": "9" * 130}                     # too long
    problems = {"RKE2E00003": "not an integer within 64 bits", "RKE2E00004": "missing",
                "RKE2E00005": "empty", "RKE2E00006": "control character",
                "RKE2E00007": "longer than 127 bytes"}
    for serial, (no, sid) in enumerate(sorted(bad_ids.items()), start=3):
        o = derived_order(t0, serial, at)
        if sid is None:
            del o["stockin_id"]
        else:
            o["stockin_id"] = sid
        for d in o["details_list"]:
            d.pop("stockin_id", None)
        injected.append(o)
    st.wdt.admin_post("/admin/orders", injected)
    st.start()
    took, nb, nd = wait_settled(st, len(good) + 1 + 1 + len(bad_ids), timeout=90)
    bills = st.bills()
    posted = {b.get("remark") for b in bills}
    check(took is not None and all("WDT:" + o["stockin_no"] in posted for o in good) and
          "WDT:RKE2E00002" in posted and len(bills) == len(good) + 1,
          "numbers: the valid orders of the page, and the one with an unmapped out-of-range "
          "number, are posted once (%d bills for %d)" % (len(bills), len(good) + 1))
    dl = ctl(st.cfg_path, "dlq", "list").stdout
    rows = {ln.split()[1]: ln for ln in dl.splitlines()[1:] if ln.startswith("pd-gain")}
    r1 = rows.get("RKE2E00001", "")
    check("1e400" in r1 and ("goods_count" in r1 or "qty" in r1),
          "numbers: the order with 1e400 in a line is parked naming number and field: %r" % r1)
    for no, what in problems.items():
        check(what in rows.get(no, "") and "stockin_id" in rows.get(no, ""),
              "ids: %s parked in dlq list with a reason naming the problem (%s): %r"
              % (no, what, rows.get(no)))
    check(nd == 1 + len(bad_ids) and len(rows) == nd, "ids: %d dead letters" % nd)
    show = json.loads(ctl(st.cfg_path, "dlq", "show", "RKE2E00003").stdout or "{}")
    check(show.get("stockin_id") == "99999999999999999999" and
          show.get("order", {}).get("stockin_no") == "RKE2E00003",
          "ids: the dead letter keeps the order with its number as text")
    last = max(wjfake.parse_wdt_time(o["modified"]) for o in good)
    check(wait_for(lambda: cursor_of(st) >= last, timeout=30),
          "ids: the window completes (the cursor passed the last order)")
    stats = st.wdt.admin_get("/admin/stats")
    fl = st.status().get("flows", [{}])[0]
    check(stats["calls"] <= 10 and fl.get("rereads", 99) == 0,
          "ids: the window is not read over and over (%d WDT calls, %s rereads)"
          % (stats["calls"], fl.get("rereads")))
    # read again: nothing new is parked, nothing posted twice
    ctl(st.cfg_path, "cursor", "set", "pd-gain", st.start_arg, check_rc=0)
    check(wait_for(lambda: cursor_of(st) >= last, timeout=30),
          "ids: the period is read again after `cursor set`")
    took, nb2, nd2 = wait_settled(st, len(good) + 1 + 1 + len(bad_ids), timeout=60)
    check(nd2 == nd and len(st.bills()) == len(bills),
          "ids: reading the period again parks nothing twice and posts nothing twice")
    check(close_stack(st) == 0, "numbers and ids: daemon exits 0")
finally:
    close_stack(st)

finish()
