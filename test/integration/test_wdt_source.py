"""WDT source end to end: the real daemon against the fake WDT (both transports) and the fake
Kingdee. Backlogs over 90 days (30-day cap and adaptive splits), live changes while paging,
the WDT quota, and SIGKILL in the middle of a backfill."""

import os
import signal
import time

from wjtest import Daemon, Stack, check, finish, read, remark_counts, wait_for
import wjfake

FAST_JDY = ["--rate-limit", "0"]


def cursor_of(stack):
    c = stack.state().get("cursors", {}).get("pd-gain")
    return c["cursor"] if c else 0


def backlog(api, orders, seed, threshold):
    """orders over 90 days; the daemon must store every eligible one exactly once."""
    s = Stack(wdt_args=["--orders", str(orders), "--seed", str(seed), "--start",
                        "2026-06-01 00:00:00", "--span-days", "90", "--rate-limit", "0"],
              jdy_args=FAST_JDY, api=api, tmp=None,
              wdt__rate_limit="100000/min", kingdee__rate_limit="100000/min",
              kingdee__concurrency=16)
    flow = s.cfg["flows"][0]
    flow["cursor"].update({"start": "2026-06-01 00:00:00", "window": "30d", "lag": "1s",
                           "interval": "1s", "split_threshold": threshold})
    s.write()
    try:
        elig = s.eligible()
        last = max(wjfake.parse_wdt_time(o["modified"]) for o in elig)
        s.start()
        ok = wait_for(lambda: cursor_of(s) >= last and
                      s.state().get("orders", 0) >= len(elig), timeout=300, step=0.5)
        st = s.state()
        check(ok, "%s: cursor passed the last order and %d orders are stored (stored %s)"
              % (api, len(elig), st.get("orders")))
        check(st.get("orders") == len(elig),
              "%s: every eligible order stored exactly once (%s of %d; ineligible ignored)"
              % (api, st.get("orders"), len(elig)))
        flows = s.status().get("flows", [{}])
        check(flows[0].get("splits", 0) > 0, "%s: windows were split by the adaptive rule (%s)"
              % (api, flows[0].get("splits")))
        stats = s.wdt.admin_get("/admin/stats")
        check(stats.get("bad_params", 0) == 0 and stats.get("sign_errors", 0) == 0,
              "%s: the fake saw no over-long window, bad page_size or bad signature" % api)
        # Months-old windows are read long after their end: nothing before the cursor is read
        # again (the overlap is only for orders that could have been invisible at the last read).
        wins = [(line.split('window_start="')[1][:19], line.split('window_end="')[1][:19])
                for line in read(s.log).splitlines() if "window stored" in line]
        back = [i for i in range(1, len(wins)) if wins[i][0] < wins[i - 1][1]]
        check(len(wins) > 5 and not back,
              "%s: backlog windows never re-read before the cursor (%d windows, %d did: %s)"
              % (api, len(wins), len(back), [wins[i] for i in back[:2]]))
        # and they become bills, one each
        ok = wait_for(lambda: s.settled(len(elig)), timeout=600, step=1)
        bills = s.bills()
        counts = remark_counts(bills)
        check(ok and len(bills) == len(elig), "%s: one bill per eligible order (%d bills, %d eligible)"
              % (api, len(bills), len(elig)))
        check(all(counts.get("WDT:" + o["stockin_no"]) == 1 for o in elig),
              "%s: every eligible stockin_no has exactly one bill" % api)
        check(s.close() == 0, "%s: daemon exits 0" % api)
    finally:
        s.close()


backlog("qimen", 5000, 11, 400)
backlog("openapi2", 5000, 12, 400)

# ---- the host's TZ does not matter ----------------------------------------------------------


def windows_under(tz):
    s = Stack(wdt_args=["--orders", "300", "--seed", "51", "--start", "2026-06-01 00:00:00",
                        "--span-days", "20", "--rate-limit", "0"],
              jdy_args=FAST_JDY, wdt__rate_limit="100000/min", kingdee__rate_limit="100000/min")
    s.cfg["flows"][0]["cursor"].update({"start": "2026-06-01 00:00:00", "window": "2d",
                                        "lag": "1s", "interval": "1s"})
    s.write()
    try:
        s.daemon = Daemon(s.cfg_path, env={"TZ": tz}).start()
        wait_for(lambda: cursor_of(s) >= wjfake.parse_wdt_time("2026-06-21 00:00:00"), timeout=60)
        return [line[line.index("window_start"):line.index(" total=")]
                for line in read(s.log).splitlines() if "window stored" in line][:10]
    finally:
        s.close()


utc, ny = windows_under("UTC"), windows_under("America/New_York")
check(len(utc) == 10 and utc == ny, "TZ=UTC and TZ=America/New_York give identical windows (%s)"
      % (utc[:1]))
check(utc and utc[0] == 'window_start="2026-06-01 00:00:00" window_end="2026-06-03 00:00:00"',
      "windows are in the configured +08:00, whatever the host TZ")

# ---- live changes while paging -------------------------------------------------------------
now = time.time()
start = wjfake.wdt_time(now - 86400)
s = Stack(wdt_args=["--orders", "400", "--seed", "21", "--start", start, "--span-days", "1",
                    "--rate-limit", "0", "--live-create", "4", "--live-modify", "4",
                    "--shift-during-scan=30"],
          jdy_args=FAST_JDY, wdt__rate_limit="100000/min", kingdee__rate_limit="100000/min")
s.cfg["flows"][0]["cursor"].update({"start": start, "window": "1h", "lag": "2s",
                                    "overlap": "1m", "interval": "1s", "page_size": 10})
s.write()
try:
    s.start()
    time.sleep(25)
    s.wdt.admin_post("/admin/faults", {"live_create": 0, "live_modify": 0, "shift_during_scan": 0})
    elig = s.eligible()
    ok = wait_for(lambda: s.settled(len(elig)), timeout=300, step=1)
    bills = s.bills()
    counts = remark_counts(bills)
    missing = [o["stockin_no"] for o in elig if counts.get("WDT:" + o["stockin_no"], 0) == 0]
    check(ok and not missing, "live: no eligible order missed (%d eligible, %d missing: %s)"
          % (len(elig), len(missing), missing[:5]))
    check(all(v == 1 for v in counts.values()), "live: no order has two bills")
    fl = s.status().get("flows", [{}])[0]
    check(fl.get("rereads", 0) > 0, "live: windows that changed while paging were re-read (%s)"
          % fl.get("rereads"))
    check(s.close() == 0, "live: daemon exits 0")
finally:
    s.close()

# ---- the WDT quota -------------------------------------------------------------------------
s = Stack(wdt_args=["--orders", "600", "--seed", "31", "--start", "2026-07-01 00:00:00",
                    "--span-days", "60", "--rate-limit", "20"],
          jdy_args=FAST_JDY, wdt__rate_limit="20/min", kingdee__rate_limit="100000/min")
s.cfg["flows"][0]["cursor"].update({"start": "2026-07-01 00:00:00", "window": "1d",
                                    "lag": "1s", "interval": "1s"})
s.write()
try:
    s.start()
    time.sleep(70)
    stats = s.wdt.admin_get("/admin/stats")
    check(stats.get("calls", 0) >= 20, "quota: the daemon kept polling (%s calls)" % stats.get("calls"))
    check(stats.get("max_calls_in_any_60s", 99) <= 20,
          "quota: never more than 20 calls in any 60 s (max %s)" % stats.get("max_calls_in_any_60s"))
    check(stats.get("rate_limited", 1) == 0, "quota: the fake never had to answer 1012 (%s)"
          % stats.get("rate_limited"))
    check(s.close() == 0, "quota: daemon exits 0")
finally:
    s.close()

# ---- SIGKILL in the middle of a backfill ------------------------------------------------------
s = Stack(wdt_args=["--orders", "2500", "--seed", "41", "--start", "2026-07-01 00:00:00",
                    "--span-days", "60", "--rate-limit", "0"],
          jdy_args=FAST_JDY + ["--max-saves-per-sec", "150"], wdt__rate_limit="100000/min",
          kingdee__rate_limit="100000/min")
s.cfg["flows"][0]["cursor"].update({"start": "2026-07-01 00:00:00", "window": "12h",
                                    "lag": "1s", "interval": "1s", "page_size": 20})
s.write()
try:
    elig = s.eligible()
    first = wjfake.parse_wdt_time("2026-07-01 00:00:00")
    last = max(wjfake.parse_wdt_time(o["modified"]) for o in elig)
    kills = 0
    for target in (0.25, 0.5, 0.75):
        s.start()
        wait_for(lambda: cursor_of(s) >= first + target * (last - first), timeout=120, step=0.05)
        s.daemon.kill()
        kills += 1
    s.start()
    ok = wait_for(lambda: s.settled(len(elig)), timeout=600, step=1)
    bills = s.bills()
    counts = remark_counts(bills)
    check(kills == 3, "backfill: killed with SIGKILL three times mid-backfill")
    check(ok and len(bills) == len(elig), "backfill: after restarts, %d bills for %d eligible orders"
          % (len(bills), len(elig)))
    check(all(counts.get("WDT:" + o["stockin_no"]) == 1 for o in elig) and
          s.jdy_stats().get("duplicate_remarks", 1) == 0, "backfill: nothing duplicated or missed")
    check(s.close() == 0, "backfill: daemon exits 0")
finally:
    s.close()

# ---- orders committed late, densely, behind the cursor (inside the overlap) -----------------
from e2e import close_stack, derived_order, e2e_stack, wait_settled  # noqa: E402

st = e2e_stack(100, span_days=2, seed=61)
try:
    elig = st.eligible()
    st.start()
    wait_settled(st, len(elig), timeout=120)
    now = int(time.time())
    late = [derived_order(elig[0], 2000 + i, wjfake.wdt_time(now - 200 + i // 7))
            for i in range(1400)]
    st.wdt.admin_post("/admin/orders", late)
    took, nb, nd = wait_settled(st, len(elig) + len(late), timeout=300)
    counts = remark_counts(st.bills())
    check(took is not None and all(counts.get("WDT:" + o["stockin_no"]) == 1 for o in late),
          "late: 1,400 orders modified behind the cursor (within the overlap) all posted once "
          "(%d bills)" % nb)
    check(close_stack(st) == 0, "late: daemon exits 0")
finally:
    close_stack(st)

finish()
