"""The state store's file in the field.

1. A process killed inside a read transaction (here hold_reader, standing in for a wdt2jdyctl
   killed mid-command) leaves its reader slot in the lock file. The running daemon clears it by
   itself (it checks the reader table every 10 s), without any other process opening the store:
   this test runs no wdt2jdyctl between the kill and the check, since opening the store clears
   stale slots too.
2. A truncated data.mdb (a real one, written by a run) is refused at start: exit 73 with a
   message saying what is wrong and what to do, in the log and on stderr, never SIGBUS. The same
   for wdt2jdyctl, and for an emptied data.mdb (which LMDB would silently take for a new one)."""

import os
import shutil
import signal
import subprocess

from wjtest import DAEMON, check, ctl, finish, read, wait_for
from e2e import close_stack, e2e_stack, wait_settled

HOLD_READER = os.environ.get("WJ_HOLD_READER", "build/test/integration/hold_reader")


def reader_pids(state):
    """PIDs in the reader table (mdb_stat -r only lists; -rr would clear). None without mdb_stat."""
    tool = shutil.which("mdb_stat")
    if not tool:
        return None
    p = subprocess.run([tool, "-r", state], capture_output=True, text=True, timeout=30)
    pids = set()
    for line in p.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit():
            pids.add(int(parts[0]))
    return pids


def start_on(cfg_path):
    """Run the daemon on cfg_path until it exits; returns (rc, stderr)."""
    p = subprocess.run([DAEMON, "-c", cfg_path], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stderr


st = e2e_stack(40, span_days=2, seed=1212)
try:
    elig = st.eligible()
    st.start()
    took, nb, nd = wait_settled(st, len(elig), timeout=120)
    check(took is not None and nb == len(elig), "a run to work on: %d bills" % nb)
    state = st.cfg["state_dir"]

    # ---- 1. a stale reader is cleared while the daemon runs ----------------------------
    holder = subprocess.Popen([HOLD_READER, state], stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline()
    check(line.startswith("holding"), "a second process holds a read transaction (%s)"
          % line.strip())
    pids = reader_pids(state)
    if pids is not None:
        check(holder.pid in pids, "its slot is in the reader table")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    cleared = wait_for(lambda: "stale reader slot" in read(st.log), timeout=60, step=0.5)
    check(cleared, "the daemon cleared the dead process's reader slot by itself")
    check("cleared 1 stale reader slot left by a process that died in a read transaction"
          in read(st.log), "and said so in the log")
    pids = reader_pids(state)
    if pids is not None:
        check(holder.pid not in pids, "the slot is gone from the reader table")
    check(st.daemon.alive(), "the daemon runs on")
    check(st.daemon.stop() == 0, "daemon exits 0")

    # ---- 2. a truncated data.mdb -------------------------------------------------------
    data = os.path.join(state, "data.mdb")
    backup = os.path.join(st.tmp, "data.mdb.good")
    shutil.copy(data, backup)
    size = os.path.getsize(data)
    for cut, what in ((size // 2, "cut in half"), (3 * 4096, "cut to its first pages")):
        shutil.copy(backup, data)
        os.truncate(data, cut)
        log_before = len(read(st.log))
        rc, err = start_on(st.cfg_path)
        check(rc == 73, "data.mdb %s: the daemon exits 73 (got %s%s)"
              % (what, rc, ", SIGBUS" if rc == -signal.SIGBUS else ""))
        check("data.mdb is truncated" in err and "Restore the state directory from a backup"
              in err and "move it aside" in err and "cursor.start" in err,
              "data.mdb %s: stderr says what is wrong and what to do" % what)
        logged = read(st.log)[log_before:]
        check("data.mdb is truncated" in logged and "level=error" in logged,
              "data.mdb %s: the log says it too" % what)
        p = ctl(st.cfg_path, "status")
        check(p.returncode == 73 and "data.mdb is truncated" in p.stderr,
              "data.mdb %s: wdt2jdyctl exits 73 with the same message (rc %d)"
              % (what, p.returncode))
        check(os.path.getsize(data) == cut, "data.mdb %s: the file was left as it was" % what)
    os.truncate(data, 0)
    rc, err = start_on(st.cfg_path)
    check(rc == 73 and "data.mdb is empty" in err,
          "an emptied data.mdb is refused, not taken for a new store (rc %s)" % rc)
    check(os.path.getsize(data) == 0, "and not rewritten")

    # the restored file works again: every order is still known, nothing posted twice
    shutil.copy(backup, data)
    st.start()
    check(wait_for(lambda: read(st.log).count("msg=ready") >= 2, timeout=30),
          "restored from the backup, the daemon starts")
    check(st.state().get("orders") == len(elig), "every order is still recorded")
    check(st.daemon.stop() == 0, "daemon exits 0")
    check(len(st.bills()) == len(elig) and st.jdy_stats().get("duplicate_remarks") == 0,
          "no second bill")
finally:
    close_stack(st)
finish()
