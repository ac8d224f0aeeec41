"""A full state store (a tiny store.map_max): the daemon stops polling, keeps dispatching what
it holds, logs one clear error a minute (not a flood), recovers when space returns (map_max
raised and reloaded), and LMDB stays intact: every eligible order ends with exactly one bill,
and the environment reopens after a restart."""

import signal
import time

from wjtest import check, finish, read, wait_for
from e2e import close_stack, compare_bills, e2e_stack, wait_settled

# Orders of up to 20 lines take a few kB each until posted; 2 MiB holds a few hundred.
st = e2e_stack(3000, span_days=6, seed=707, store={"map_size": "1MiB", "map_max": "2MiB"},
               flows__0__cursor__split_threshold=100, kingdee__concurrency=4)
try:
    elig = st.eligible()
    st.start()
    check(wait_for(lambda: "state store full" in read(st.log), timeout=300),
          "the store filled up and the daemon said so")
    t_full = time.monotonic()
    # Stalled: what it held is dispatched, nothing more is polled.
    wait_for(lambda: st.state().get("queue", {}).get("ready", 1) == 0 and
             st.state().get("queue", {}).get("in_flight", 1) == 0, timeout=120)
    n1 = len(st.bills())
    time.sleep(20)
    log = read(st.log)
    check(st.daemon.alive(), "the daemon kept running with a full store")
    check(0 < n1 < len(elig), "it dispatched what it held (%d of %d bills) and stopped polling"
          % (n1, len(elig)))
    errors = log.count("state store full (store.map_max")
    minutes = (time.monotonic() - t_full) / 60
    check(errors <= 2 + int(minutes), "one clear error a minute, not a flood (%d error lines in "
          "%.1f min)" % (errors, minutes))
    check(log.count("state store full: polling paused") <= 2, "the pause is logged once")
    # Space returns: raise the limit and reload.
    st.cfg["store"]["map_max"] = "256MiB"
    st.write()
    st.daemon.signal(signal.SIGHUP)
    took, nb, nd = wait_settled(st, len(elig), timeout=600)
    check(took is not None and nd == 0, "recovered after map_max was raised: %d bills for %d orders"
          % (nb, len(elig)))
    check("polling resumed" in read(st.log), "polling resumed")
    missing, dups, extra, problems = compare_bills(st.bills(), elig, "v1")
    check(not missing and not dups and not extra and not problems,
          "exactly one correct bill per order (missing %d, duplicated %d)" % (len(missing), len(dups)))
    check(st.daemon.stop() == 0, "daemon exits 0")
    st.start()
    check(wait_for(lambda: read(st.log).count("msg=ready") >= 2), "LMDB intact: the daemon restarts on it")
    check(st.state().get("orders") == len(elig), "LMDB intact: every order still recorded")
    check(close_stack(st) == 0, "daemon exits 0 again")
finally:
    close_stack(st)
finish()
