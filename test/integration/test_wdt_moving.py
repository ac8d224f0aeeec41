"""Orders that move while the daemon reads, and a WDT clock that is not the host's: the real
daemon against the fake WDT and the fake Kingdee.

- Swaps during paging: on later pages, one order of a page already read leaves the window and
  a new one enters it, so the count stays the same while an order slides onto a page already
  read. Every order must still get its bill.
- WDT's clock 8 minutes behind the host while orders are created live: windows must follow
  WDT's clock (nothing lost), the offset shows in status.json and the metrics file, and the log
  warns once."""

import os
import re
import time

from e2e import close_stack, compare_bills, e2e_stack, log_tail, wait_settled, wait_status
from wjtest import check, finish, read, wait_for
import wjfake


def cursor_of(st):
    c = st.state().get("cursors", {}).get("pd-gain")
    return c["cursor"] if c else 0


def settle_and_compare(st, what, timeout=120):
    """Wait until the cursor passed every eligible order and the queue is empty; compare."""
    elig = st.eligible()
    last = max(wjfake.parse_wdt_time(o["modified"]) for o in elig)
    passed = wait_for(lambda: cursor_of(st) >= last, timeout=timeout, step=0.3)
    check(passed, "%s: the cursor passed the last order" % what)
    took, nb, nd = wait_settled(st, len(elig), timeout=timeout)
    missing, dups, extra, problems = compare_bills(st.bills(), elig, "v1")
    check(took is not None and not missing and not dups and not extra and not problems,
          "%s: %d eligible orders, %d bills: missing %s, duplicated %s, bodies %s"
          % (what, len(elig), nb, missing[:5], dups[:3], problems[:2]))
    if took is None or missing:
        print(log_tail(st, 40))
    return elig


# ---- orders swapped during paging ---------------------------------------------------------------
for reading in ("page0", "always"):
    st = e2e_stack(300, span_days=1, seed=81,
                   wdt_args=["--swap-during-scan=40", "--total-count", reading],
                   flows__0__cursor__page_size=10)
    try:
        st.start()
        # the backlog is read with swaps; then the swapped-out orders come back in live windows
        wait_for(lambda: st.wdt.admin_get("/admin/stats")["swaps"] >= 15, timeout=60, step=0.2)
        st.wdt.admin_post("/admin/faults", {"swap_during_scan": 0})
        swaps = st.wdt.admin_get("/admin/stats")["swaps"]
        elig = settle_and_compare(st, "swaps (%s): after %d swaps" % (reading, swaps))
        check(swaps >= 15 and sum(o["stockin_no"].startswith("RKSWAP") for o in elig) == swaps,
              "swaps (%s): %d orders entered windows being read" % (reading, swaps))
        fl = st.status().get("flows", [{}])[0]
        check(fl.get("rereads", 0) > 0 and fl.get("checks", 0) > 0,
              "swaps (%s): windows found changed were read again (%s rereads, %s checks)"
              % (reading, fl.get("rereads"), fl.get("checks")))
        check("was modified meanwhile" in read(st.log),
              "swaps (%s): the log names the order that moved" % reading)
        check(close_stack(st) == 0, "swaps (%s): daemon exits 0" % reading)
    finally:
        close_stack(st)

# ---- an order that leaves by no longer matching the query ------------------------------------------
# On later pages one order of a page already read is cancelled (status 10: it leaves by its
# filter, not only by its time) and a new one enters: the change query must still see it.
st = e2e_stack(300, span_days=1, seed=83, wdt_args=["--swap-during-scan=40"],
               flows__0__cursor__page_size=10)
try:
    st.wdt.admin_post("/admin/faults", {"swap_cancels": 1})
    st.start()
    wait_for(lambda: st.wdt.admin_get("/admin/stats")["swaps"] >= 15, timeout=60, step=0.2)
    st.wdt.admin_post("/admin/faults", {"swap_during_scan": 0})
    stats = st.wdt.admin_get("/admin/stats")
    cancelled = {"WDT:" + no for no in stats["swap_cancelled"]}
    elig = st.eligible()
    last = max(wjfake.parse_wdt_time(o["modified"]) for o in elig)
    check(wait_for(lambda: cursor_of(st) >= last, timeout=120, step=0.3),
          "cancels: the cursor passed the last order")
    # a cancelled order was eligible when read: its bill is not a fault; only they may be extra
    took, nb, nd = wait_settled(st, len(elig), timeout=120)
    missing, dups, extra, problems = compare_bills(st.bills(), elig, "v1")
    check(took is not None and not missing and not dups and set(extra) <= cancelled,
          "cancels: after %d swaps (%d cancelled) every eligible order has one bill: missing %s, "
          "duplicated %s, unexpected %s" % (stats["swaps"], len(cancelled), missing[:5], dups[:3],
                                             sorted(set(extra) - cancelled)[:3]))
    check(close_stack(st) == 0, "cancels: daemon exits 0")
finally:
    close_stack(st)

# ---- WDT's clock 8 minutes behind the host -------------------------------------------------------
for api in ("qimen", "openapi2"):
    st = e2e_stack(60, span_days=1, seed=82,
                   wdt_args=["--clock-offset", "-480", "--live-create", "2"],
                   flows__0__cursor__lag="2s", flows__0__cursor__overlap="1m")
    st.cfg["status"]["metrics_file"] = os.path.join(st.tmp, "wdt2jdy.prom")
    if api == "openapi2":
        # openapi2 allows timestamps ±5 min: the first call is refused, the next one carries
        # WDT's time
        st.cfg["wdt"]["api"] = "openapi2"
        st.cfg["wdt"]["url"] = st.wdt.url + "/openapi2/"
    st.write()
    try:
        st.start()
        status = wait_status(st, lambda s: s.get("wdt", {}).get("clock_offset_s") is not None,
                             timeout=30)
        off = status.get("wdt", {}).get("clock_offset_s")
        check(off is not None and -482 <= off <= -478,
              "clock (%s): status.json shows WDT's clock offset (%s s)" % (api, off))
        # orders created live for a while, then settle
        n0 = len(st.eligible())
        wait_for(lambda: len(st.eligible()) >= n0 + 20, timeout=60, step=0.5)
        st.wdt.admin_post("/admin/faults", {"live_create": 0})
        settle_and_compare(st, "clock (%s): WDT 480 s behind, orders created live" % api)
        prom = read(st.cfg["status"]["metrics_file"])
        m = re.search(r"^wdt2jdy_wdt_clock_offset_seconds(?:\{[^}]*\})? (-?\d+)$", prom, re.M)
        check(m and -482 <= int(m.group(1)) <= -478,
              "clock (%s): the metrics file shows it (%s)" % (api, m and m.group(1)))
        warns = [ln for ln in read(st.log).splitlines() if "WDT's clock is" in ln]
        check(len(warns) == 1 and "behind" in warns[0] and "level=warn" in warns[0],
              "clock (%s): one warning in the log: %s" % (api, warns[:3]))
        # no window ended past WDT's now - lag: the cursor is behind WDT's clock
        cur = st.state().get("cursors", {}).get("pd-gain", {}).get("cursor", 0)
        check(0 < cur <= time.time() - 480,
              "clock (%s): the cursor follows WDT's clock (%d s behind the host)"
              % (api, time.time() - cur))
        check(close_stack(st) == 0, "clock (%s): daemon exits 0" % api)
    finally:
        close_stack(st)

finish()
