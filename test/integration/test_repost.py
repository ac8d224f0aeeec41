"""Re-post (重推) an order whose bill was deleted in Kingdee: `wdt2jdyctl repost FLOW
STOCKIN_NO` reads the order from WDT again by its number, checks that Kingdee holds no bill of
it (its marker, its stock-in number, the bill recorded) and queues it; the daemon posts it once.
Refused, naming the bill, while the bill is there; refused when WDT no longer has the order (by
the flow's filters) or the order was never posted."""

import copy
import time

from e2e import close_stack, e2e_stack, wait_settled
from wjtest import check, ctl, finish, wait_for
import wjfake


def markers(st):
    return [b.get("remark") for b in st.bills()]


st = e2e_stack(20, span_days=2, seed=818)
try:
    elig = sorted(st.eligible(), key=lambda o: o["modified"])
    st.start()
    took, nb, nd = wait_settled(st, len(elig), timeout=90)
    check(took is not None and nd == 0, "run settled: %d bills" % nb)
    cfg = st.cfg_path
    x, y = elig[0], elig[1]
    mx = "WDT:" + x["stockin_no"]
    bill = [b for b in st.bills() if b["remark"] == mx][0]

    # while its bill is there: refused, naming it
    p = ctl(cfg, "repost", "pd-gain", x["stockin_no"])
    check(p.returncode == 1 and "refused" in p.stderr and ("id %s" % bill["id"]) in p.stderr,
          "repost refused while the bill is in Kingdee: %r" % p.stderr)
    time.sleep(0.5)
    check(markers(st).count(mx) == 1 and len(st.bills()) == nb, "still one bill")

    # the accountant deletes it: posted again, once
    st.jdy.admin_post("/admin/delete-bills", {"ids": [bill["id"]]})
    check(mx not in markers(st), "the bill is gone from Kingdee")
    p = ctl(cfg, "repost", "pd-gain", x["stockin_no"])
    check(p.returncode == 0 and "queued again" in p.stdout and ("id " + bill["id"]) in p.stdout,
          "repost queues it: %r" % (p.stdout + p.stderr))
    check(wait_for(lambda: markers(st).count(mx) == 1, timeout=30, step=0.3),
          "the daemon posted it again")
    time.sleep(1)
    new = [b for b in st.bills() if b["remark"] == mx]
    check(len(new) == 1 and len(st.bills()) == nb and new[0]["id"] != bill["id"],
          "exactly one bill of it again (%d bills in all)" % len(st.bills()))
    check(new and new[0]["body"]["material_entity"] == bill["body"]["material_entity"],
          "the same lines as before")
    p = ctl(cfg, "repost", "pd-gain", x["stockin_no"])
    check(p.returncode == 1 and ("id %s" % new[0]["id"]) in p.stderr,
          "a second repost is refused, naming the new bill: %r" % p.stderr)

    # a bill that WDT no longer shows by the flow's filters (cancelled): refused
    my = "WDT:" + y["stockin_no"]
    ybill = [b for b in st.bills() if b["remark"] == my][0]
    st.jdy.admin_post("/admin/delete-bills", {"bill_nos": [ybill["bill_no"]]})
    cancelled = copy.deepcopy(y)
    cancelled["status"] = "10"
    cancelled["modified"] = wjfake.wdt_time(time.time())
    st.wdt.admin_post("/admin/orders", cancelled)
    p = ctl(cfg, "repost", "pd-gain", y["stockin_no"])
    check(p.returncode == 1 and "WDT has no order %s" % y["stockin_no"] in p.stderr,
          "repost of an order WDT no longer lists is refused: %r" % p.stderr)
    p = ctl(cfg, "repost", "pd-gain", "RKNOSUCH")
    check(p.returncode == 1 and "no order of flow pd-gain" in p.stderr,
          "repost of an unknown number is refused: %r" % p.stderr)
    time.sleep(1)
    check(my not in markers(st) and len(st.bills()) == nb - 1, "nothing posted for them")
    s = st.state()
    check(s.get("dead") == 0 and s.get("queue", {}).get("ready") == 0, "nothing left queued")
    check(close_stack(st) == 0, "daemon exits 0")
finally:
    close_stack(st)

finish()
