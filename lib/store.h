/* Durable state in one LMDB directory environment (<state_dir>/data.mdb + lock.mdb).
 *
 * Key space (one named database per kind; integers in keys are big-endian so that byte order is
 * numeric order; a "doc key" is flow "\0" stockin_id):
 *   meta      "schema"     → u32 BE schema version (WJ_STORE_SCHEMA), written at creation
 *             "seq"        → u64 BE last sequence number handed out for queue/delayed keys
 *             "jdy_token"  → cached Kingdee token record
 *             "stat:NAME"  → u64 BE lifetime counters (saved, parked, review, failed, ...);
 *             "stat:NAME/FLOW" the same of one flow (lib/history.h)
 *   cursors   flow name    → JSON cursor of that flow (last fully stored window)
 *   docs      doc key      → doc record (content hash, state, attempts, errors, bill): small
 *   orders    doc key      → the order as read from WDT, canonical JSON text (sorted keys,
 *             compact; its SHA-256 is the doc's "hash"), kept until its bill is saved
 *   slim      doc key      → mapping id (16 hex digits) + the order reduced to the fields that
 *             mapping reads (wj_mapping_project); used instead of the order when the flow's
 *             mapping has that id, else ignored. Written and removed with the order.
 *   queue     priority(u8) seq(u64 BE)   → doc key, ready to dispatch, lowest key first
 *   delayed   due_ms(u64 BE) seq(u64 BE) → priority(u8) doc key; retry not before due_ms
 *             (epoch ms), then moved to queue under the same priority and seq
 *   inflight  doc key      → start time (u64 BE epoch ms) of the running attempt
 *   dead      doc key      → JSON dead letter (reason, payload)
 *   review    doc key      → JSON "changed after posting" record for the operator
 *   lookup    "m:" number  → JSON material lookup cache entry (id, unit, expiry)
 *             "s:" number  → JSON store (warehouse) lookup cache entry
 *   marks     flow "\0" stockin_no → JSON {"bill_no", "imported"}: a stock-in another
 *             integrator posted already (wdt2jdyctl mark-posted); an order of that flow and
 *             number is recorded as posted ("adopted") instead of being posted
 *   posted    doc key      → what the order's bill holds (wj_bill_view, lib/dispatch.h), written
 *             when the bill is saved or adopted; a later change of the order is put up for
 *             review only when it changes this
 *   history   slot(u32 BE) → one minute's counts (lib/history.h): a fixed ring of 14 days of
 *             minutes, slot = (epoch s / 60) mod 20160; the value names its minute
 *
 * Threads and processes: the environment is opened with MDB_NOTLS, so read transactions may move
 * between threads and a thread may hold several. Other processes (wdt2jdyctl) may open the same
 * directory while the daemon runs; LMDB does the locking. Only one write transaction exists at a
 * time per environment (across processes); a second one waits.
 *
 * Batched commits: a caller may keep one write transaction open across a loop turn. While it is
 * open, the same thread must not begin another write transaction nor call wj_store_write()
 * (both return -EDEADLK); on -ENOSPC it aborts, calls wj_store_grow() and redoes the batch.
 *
 * Errors are negative errno values, translated at this boundary: missing key -ENOENT, map full
 * -ENOSPC, reader table full -EAGAIN, key or value of invalid size -EINVAL, anything else -EIO (or
 * the system errno when LMDB reports one). The text of the last failure in the calling thread is
 * available from wj_store_strerror() for logging.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 2: the order text moved out of the doc record into "orders" (a store of version 1 is
 * upgraded in place when opened). */
#define WJ_STORE_SCHEMA 2u

typedef enum wj_db {
	WJ_DB_META = 0,
	WJ_DB_CURSORS,
	WJ_DB_DOCS,
	WJ_DB_QUEUE,
	WJ_DB_DELAYED,
	WJ_DB_INFLIGHT,
	WJ_DB_DEAD,
	WJ_DB_REVIEW,
	WJ_DB_LOOKUP,
	WJ_DB_ORDERS,
	WJ_DB_SLIM,
	WJ_DB_MARKS,
	WJ_DB_POSTED,
	WJ_DB_HISTORY,
	WJ_DB_COUNT
} wj_db_t;

typedef struct wj_store wj_store_t;
struct MDB_txn;
struct MDB_cursor;

/* A value read from the store. Points into the map: valid until the transaction ends (and, in a
 * write transaction, until the next put or delete). Never free it. */
typedef struct wj_val {
	const void *data;
	size_t len;
} wj_val_t;

/* A transaction that carries its first error. Kept on the caller's stack. After the first failing
 * operation, later operations are no-ops and commit turns into abort and returns that error. */
typedef struct wj_txn {
	wj_store_t *store;
	struct MDB_txn *txn;
	int err;   /* first error (negative errno) or 0 */
	bool write;
} wj_txn_t;

/* Cursor over one database of a transaction. Kept on the caller's stack. */
typedef struct wj_iter {
	wj_txn_t *txn;
	struct MDB_cursor *cur;
	wj_val_t key;
	wj_val_t val;
	bool valid; /* positioned on an entry */
} wj_iter_t;

typedef struct wj_store_stat {
	uint64_t map_size;   /* current map size in bytes */
	uint64_t map_max;    /* growth limit in bytes */
	uint64_t used_bytes; /* pages in use × page size */
	unsigned readers;    /* reader slots in use (all processes) */
	unsigned max_readers;
	size_t entries[WJ_DB_COUNT];
} wj_store_stat_t;

/* Big-endian u64 key helpers. */
void wj_key_u64be(uint8_t out[8], uint64_t v);
uint64_t wj_u64be_get(const uint8_t *p);

/* Name of a database ("meta", "cursors", ...) for status output. */
const char *wj_db_name(wj_db_t db);

/* Text of the last store failure in the calling thread ("" if none). Valid until the next store
 * call in this thread. */
const char *wj_store_strerror(void);

/* Open (creating dir with mode 0700 and the databases if missing) the environment in dir.
 * map_size: initial map in bytes (the data file's size if that is larger); map_max: growth
 * limit (raised to map_size if smaller). Stale reader slots of dead processes are cleared.
 * A store written with another schema version gives -EPROTO; a damaged data file -EUCLEAN
 * (shorter than the pages its meta page says are in use, empty, or not LMDB): it is never
 * read, since a missing page would raise SIGBUS, and the text says what the operator can do.
 * 0 or -errno; on failure *out is NULL and wj_store_strerror() says why. Close with
 * wj_store_close(). */
int wj_store_open(const char *dir, uint64_t map_size, uint64_t map_max, wj_store_t **out);
/* No transaction may be open. NULL is ignored. */
void wj_store_close(wj_store_t *s);
/* Flush to disk (fsync) even if the OS would delay it. 0 or -errno. */
int wj_store_sync(wj_store_t *s);
/* Write transactions this process committed since open: each one syncs the data file. */
uint64_t wj_store_commits(wj_store_t *s);
/* Current map size in bytes. */
uint64_t wj_store_map_size(const wj_store_t *s);
/* Map size, usage and entries per database. Opens its own read transaction. 0 or -errno. */
int wj_store_stat(wj_store_t *s, wj_store_stat_t *st);
/* Clear reader slots left by dead processes (a killed wdt2jdyctl holding a read transaction
 * would otherwise keep old pages from being reused). The daemon calls it every 10 s; open does
 * it once. *dead (may be NULL) gets the number cleared. 0 or -errno. */
int wj_store_reader_check(wj_store_t *s, int *dead);
/* Double the map (capped at map_max). No transaction of this process may be open: -EBUSY
 * otherwise; -ENOSPC when the map is already at map_max. 0 or -errno. */
int wj_store_grow(wj_store_t *s);
/* Change the growth limit (configuration reload); never below the current map size. */
void wj_store_set_max(wj_store_t *s, uint64_t map_max);

/* Run fn in a fresh write transaction and commit. If fn, any operation or the commit fails with
 * -ENOSPC, the transaction is aborted, the map grown and fn run again from the start, so fn must
 * be re-runnable (no side effects outside the transaction). A non-zero return of fn aborts and is
 * returned. Returns -ENOSPC once map_max is reached (nothing of this call is written).
 * Forbidden while this thread holds any transaction of s (with a write transaction open it
 * returns -EDEADLK; a read transaction prevents growing: -EBUSY on a full map). 0 or -errno. */
int wj_store_write(wj_store_t *s, int (*fn)(wj_txn_t *txn, void *arg), void *arg);

/* Begin a read (write=false) or write transaction. Waits for other writers, also in other
 * processes; -EDEADLK if this thread already holds a write transaction of s. Adopts a map grown
 * by another process (-EAGAIN if that is needed while this process holds another transaction).
 * 0 or -errno; on failure txn->err is set and nothing else. */
int wj_txn_begin(wj_store_t *s, wj_txn_t *txn, bool write);
/* Look up a key. 0 and *out set, -ENOENT when missing (does not set txn->err), other errors are
 * kept in txn->err. */
int wj_txn_get(wj_txn_t *t, wj_db_t db, const void *k, size_t kl, wj_val_t *out);
/* Insert or replace. Errors are kept in t->err. */
void wj_txn_put(wj_txn_t *t, wj_db_t db, const void *k, size_t kl, const void *v, size_t vl);
/* JSON values (jansson): put the compact dump; get parses it (NULL when missing or not JSON;
 * caller owns the result). */
struct json_t;
void wj_txn_put_json(wj_txn_t *t, wj_db_t db, const void *k, size_t kl, const struct json_t *v);
struct json_t *wj_txn_get_json(wj_txn_t *t, wj_db_t db, const void *k, size_t kl);
/* Delete; a missing key is not an error. Errors are kept in t->err. */
void wj_txn_del(wj_txn_t *t, wj_db_t db, const void *k, size_t kl);
/* Number of entries in db. 0 or -errno (kept in t->err). */
int wj_txn_count(wj_txn_t *t, wj_db_t db, size_t *n);
/* Next value of the meta "seq" counter (starts at 1). Write transactions only. 0 or -errno. */
int wj_txn_seq_next(wj_txn_t *t, uint64_t *seq);
/* Commit (write) or finish (read). If any operation failed, aborts instead and returns that
 * first error. The transaction is ended in every case. 0 or -errno. */
int wj_txn_commit(wj_txn_t *t);
/* End the transaction without writing. Safe on an ended or never begun (zeroed) txn. */
void wj_txn_abort(wj_txn_t *t);

/* Open a cursor on db. Close it with wj_iter_close() before the transaction ends. 0 or -errno
 * (kept in t->err). Usage:
 *   for (r = wj_iter_seek(&it, NULL, 0); r == 0; r = wj_iter_next(&it)) { ... }
 * where r == -ENOENT means the end was reached. */
int wj_iter_open(wj_txn_t *t, wj_db_t db, wj_iter_t *it);
/* Position on the first key >= key (key NULL or empty: the first entry). 0, -ENOENT past the
 * end, or another error (kept in the txn). */
int wj_iter_seek(wj_iter_t *it, const void *key, size_t kl);
/* Step to the next entry. 0, -ENOENT at the end, or another error (kept in the txn). */
int wj_iter_next(wj_iter_t *it);
/* Current entry; valid until the cursor moves or the data changes. */
wj_val_t wj_iter_key(const wj_iter_t *it);
wj_val_t wj_iter_val(const wj_iter_t *it);
/* Delete the current entry (write transactions). The following wj_iter_next() yields the entry
 * after the deleted one. 0 or -errno (kept in the txn). */
int wj_iter_del(wj_iter_t *it);
void wj_iter_close(wj_iter_t *it);
