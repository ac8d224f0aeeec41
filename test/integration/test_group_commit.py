"""Group commit: outcomes of saves that answer one after another are committed together, not
one LMDB commit (one data sync) each. Kingdee answers at most 100 saves per second, so the
outcomes arrive about 10 ms apart; status.json counts the store's commits (store.commits) and
the metrics file exports them (wdt2jdy_store_commits_total). Every order gets exactly one bill."""

import os

from e2e import close_stack, compare_bills, e2e_stack, wait_settled, wait_status
from wjtest import check, finish, read_metrics

# Few materials, so that the cold lookups (one cached each) stay few next to the saves.
st = e2e_stack(400, seed=515, wdt_args=["--materials", "10"],
               jdy_args=["--max-saves-per-sec", "100"])
st.cfg["status"]["metrics_file"] = os.path.join(st.tmp, "wdt2jdy.prom")
st.write()
try:
    elig = st.eligible()
    n = len(elig)
    st.start()
    took, nb, nd = wait_settled(st, n, timeout=120)
    check(took is not None and nb == n and nd == 0, "all %d orders posted: %d bills" % (n, nb))
    s = wait_status(st, lambda s: s.get("posted", 0) >= n, timeout=20)
    commits = s.get("store", {}).get("commits", 0)
    check(s.get("posted") == n, "status: %s posted" % s.get("posted"))
    # One commit per outcome would be at least n; a group holds about five at 100/s.
    check(0 < commits <= n // 2, "%d store commits for %d bills" % (commits, n))
    m = wait_status(st, lambda s: True) and read_metrics(st.cfg["status"]["metrics_file"])
    check(m.get("wdt2jdy_store_commits_total", 0) >= commits,
          "metric wdt2jdy_store_commits_total: %s" % m.get("wdt2jdy_store_commits_total"))
    check(not any(compare_bills(st.bills(), elig, "v1")), "one bill per order, bodies as expected")
finally:
    close_stack(st)
finish()
