/* LMDB durable state: environment, schema check, first-error transactions, cursors, map growth. */
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "lib/store.h"

#include "lib/json.h"

#include <jansson.h>

#define WJ_STORE_MAXREADERS 126
#define WJ_STORE_GROW_ROUNDS 64

struct wj_store {
	MDB_env *env;
	MDB_dbi dbi[WJ_DB_COUNT];
	uint64_t map_size;
	uint64_t map_max;
	atomic_int ntxn; /* transactions of this process open through wj_txn_begin */
	atomic_bool writing; /* a write transaction of this process is open, in thread writer */
	pthread_t writer;
	atomic_uint_fast64_t commits; /* write transactions committed (one data sync each) */
};

static const char *const db_names[WJ_DB_COUNT] = {
	[WJ_DB_META] = "meta",
	[WJ_DB_CURSORS] = "cursors",
	[WJ_DB_DOCS] = "docs",
	[WJ_DB_QUEUE] = "queue",
	[WJ_DB_DELAYED] = "delayed",
	[WJ_DB_INFLIGHT] = "inflight",
	[WJ_DB_DEAD] = "dead",
	[WJ_DB_REVIEW] = "review",
	[WJ_DB_LOOKUP] = "lookup",
	[WJ_DB_ORDERS] = "orders",
	[WJ_DB_SLIM] = "slim",
	[WJ_DB_MARKS] = "marks",
	[WJ_DB_POSTED] = "posted",
	[WJ_DB_HISTORY] = "history",
};

static __thread char last_err[1024];

__attribute__((format(printf, 1, 2)))
static void set_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_err, sizeof(last_err), fmt, ap);
	va_end(ap);
}

/* Translate an LMDB return code to a negative errno and remember its text. */
static int mdb_fail(int rc, const char *what)
{
	set_err("%s: %s", what, mdb_strerror(rc));
	switch (rc) {
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_READERS_FULL:
		return -EAGAIN;
	case MDB_BAD_VALSIZE:
		return -EINVAL;
	default:
		/* LMDB passes system errors through as positive errno values. */
		if (rc > 0)
			return -rc;
		return -EIO;
	}
}

const char *wj_store_strerror(void)
{
	return last_err;
}

void wj_key_u64be(uint8_t out[8], uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		out[i] = (uint8_t)(v & 0xff);
		v >>= 8;
	}
}

uint64_t wj_u64be_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

const char *wj_db_name(wj_db_t db)
{
	if ((unsigned)db >= WJ_DB_COUNT)
		return "?";
	return db_names[db];
}

static void refresh_map_size(wj_store_t *s)
{
	MDB_envinfo info;
	if (mdb_env_info(s->env, &info) == 0)
		s->map_size = info.me_mapsize;
}

static uint32_t be32(const void *data)
{
	const uint8_t *p = data;
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int put_schema(wj_store_t *s, MDB_txn *txn, uint32_t version)
{
	uint8_t ver[4] = {(uint8_t)(version >> 24), (uint8_t)(version >> 16),
			  (uint8_t)(version >> 8), (uint8_t)version};
	MDB_val k = {.mv_size = 6, .mv_data = (void *)"schema"};
	MDB_val v = {.mv_size = sizeof(ver), .mv_data = ver};
	int rc = mdb_put(txn, s->dbi[WJ_DB_META], &k, &v, 0);
	return rc ? mdb_fail(rc, "write schema version") : 0;
}

/* Version 1 → 2: move each doc's "order" into the orders database as canonical text. */
static int upgrade_v1(wj_store_t *s, MDB_txn *txn, const char *dir)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_cursor_open(txn, s->dbi[WJ_DB_DOCS], &cur);
	if (rc != 0)
		return mdb_fail(rc, "mdb_cursor_open");
	int ret = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		json_t *doc = json_loadb(v.mv_data, v.mv_size, 0, NULL);
		json_t *order = json_object_get(doc, "order");
		if (!order) {
			json_decref(doc);
			continue;
		}
		size_t tlen;
		char *text = wj_json_canon(order, &tlen);
		json_object_del(doc, "order");
		char *small = json_dumps(doc, JSON_COMPACT);
		json_decref(doc);
		if (!text || !small) {
			free(text);
			free(small);
			ret = -ENOMEM;
			break;
		}
		MDB_val ov = {.mv_size = tlen, .mv_data = text};
		MDB_val dv = {.mv_size = strlen(small), .mv_data = small};
		rc = mdb_put(txn, s->dbi[WJ_DB_ORDERS], &k, &ov, 0);
		if (rc == 0)
			rc = mdb_cursor_put(cur, &k, &dv, MDB_CURRENT);
		free(text);
		free(small);
		if (rc != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (ret == 0 && rc != 0 && rc != MDB_NOTFOUND)
		ret = mdb_fail(rc, "upgrade docs");
	if (ret == 0)
		ret = put_schema(s, txn, 2);
	if (ret != 0)
		set_err("store %s: cannot upgrade from schema version 1: %s", dir,
			ret == -ENOMEM ? "out of memory" : last_err);
	return ret;
}

/* Check the schema version; in a write txn, write it (new store) or upgrade an older one.
 * 1: an upgrade is needed (read-only txn). */
static int check_schema(wj_store_t *s, MDB_txn *txn, bool write, const char *dir)
{
	MDB_val k = {.mv_size = 6, .mv_data = (void *)"schema"}, v;
	int rc = mdb_get(txn, s->dbi[WJ_DB_META], &k, &v);
	if (rc == 0) {
		if (v.mv_size != 4) {
			set_err("store %s: bad schema version record", dir);
			return -EPROTO;
		}
		uint32_t ver = be32(v.mv_data);
		if (ver == 1 && WJ_STORE_SCHEMA == 2)
			return write ? upgrade_v1(s, txn, dir) : 1;
		if (ver != WJ_STORE_SCHEMA) {
			set_err("store %s has schema version %" PRIu32 ", this program needs %u", dir,
				ver, WJ_STORE_SCHEMA);
			return -EPROTO;
		}
		return 0;
	}
	if (rc != MDB_NOTFOUND)
		return mdb_fail(rc, "read schema version");
	if (!write)
		return -ENOENT;
	for (int i = 0; i < WJ_DB_COUNT; i++) {
		MDB_stat st;
		rc = mdb_stat(txn, s->dbi[i], &st);
		if (rc != 0)
			return mdb_fail(rc, "mdb_stat");
		if (st.ms_entries != 0) {
			set_err("store %s has data but no schema version", dir);
			return -EPROTO;
		}
	}
	return put_schema(s, txn, WJ_STORE_SCHEMA);
}

/* Open the named databases: first read-only (no writer lock needed when they exist, so
 * wdt2jdyctl does not wait for the daemon's write transaction), else create them. */
static int open_dbs(wj_store_t *s, const char *dir)
{
	MDB_txn *txn = NULL;
	int ret;
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0)
		return mdb_fail(rc, "mdb_txn_begin");
	bool missing = false;
	for (int i = 0; i < WJ_DB_COUNT && !missing; i++) {
		rc = mdb_dbi_open(txn, db_names[i], 0, &s->dbi[i]);
		if (rc == MDB_NOTFOUND)
			missing = true;
		else if (rc != 0) {
			ret = mdb_fail(rc, "mdb_dbi_open");
			goto fail;
		}
	}
	if (!missing) {
		ret = check_schema(s, txn, false, dir);
		if (ret == 0) {
			rc = mdb_txn_commit(txn); /* keeps the handles */
			txn = NULL;
			return rc ? mdb_fail(rc, "mdb_txn_commit") : 0;
		}
		if (ret != -ENOENT && ret != 1)
			goto fail;
	}
	mdb_txn_abort(txn);
	txn = NULL;

	rc = mdb_txn_begin(s->env, NULL, 0, &txn);
	if (rc != 0)
		return mdb_fail(rc, "mdb_txn_begin");
	for (int i = 0; i < WJ_DB_COUNT; i++) {
		rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
		if (rc != 0) {
			ret = mdb_fail(rc, "mdb_dbi_open");
			goto fail;
		}
	}
	ret = check_schema(s, txn, true, dir);
	if (ret != 0)
		goto fail;
	rc = mdb_txn_commit(txn);
	txn = NULL;
	return rc ? mdb_fail(rc, "mdb_txn_commit") : 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	return ret;
}

/* What an operator can do about a damaged data file (appended to the error text). */
#define DAMAGED_ADVICE \
	"Restore the state directory from a backup, or move it aside to start over with an " \
	"empty state: the record of which orders were posted is then lost, so set each flow's " \
	"cursor.start after the last order already in Kingdee, or those orders are posted twice"

/* The data file must hold every page the newest meta page says is in use: LMDB reads pages
 * through a memory map, and a page past the end of a truncated file kills the process with
 * SIGBUS on first access. Checked before any transaction. */
static int check_data_file(wj_store_t *s, const char *path)
{
	MDB_envinfo info;
	MDB_stat st;
	mdb_filehandle_t fd;
	struct stat fst;
	int rc;
	if ((rc = mdb_env_info(s->env, &info)) != 0 || (rc = mdb_env_stat(s->env, &st)) != 0 ||
	    (rc = mdb_env_get_fd(s->env, &fd)) != 0)
		return mdb_fail(rc, "read the environment's meta page");
	if (fstat(fd, &fst) != 0) {
		int e = errno;
		set_err("cannot access %s: %s", path, strerror(e));
		return -e;
	}
	uint64_t need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	if ((uint64_t)fst.st_size >= need)
		return 0;
	set_err("%s is truncated: it holds %lld bytes, but the store uses %" PRIu64 " (%" PRIu64
		" pages of %u bytes); reading it would crash. " DAMAGED_ADVICE,
		path, (long long)fst.st_size, need, (uint64_t)info.me_last_pgno + 1, st.ms_psize);
	return -EUCLEAN;
}

int wj_store_open(const char *dir, uint64_t map_size, uint64_t map_max, wj_store_t **out)
{
	wj_store_t *s = NULL;
	int ret, rc;
	struct stat st;
	char path[4096];

	*out = NULL;
	last_err[0] = '\0';
	if (!dir || !*dir) {
		set_err("store directory not set");
		return -EINVAL;
	}
	if (mkdir(dir, 0700) != 0) {
		ret = -errno;
		if (ret != -EEXIST) {
			set_err("cannot create %s: %s", dir, strerror(-ret));
			return ret;
		}
		if (stat(dir, &st) != 0) {
			ret = -errno;
			set_err("cannot access %s: %s", dir, strerror(-ret));
			return ret;
		}
		if (!S_ISDIR(st.st_mode)) {
			set_err("%s is not a directory", dir);
			return -ENOTDIR;
		}
	}
	if (snprintf(path, sizeof(path), "%s/data.mdb", dir) >= (int)sizeof(path)) {
		set_err("store path too long");
		return -ENAMETOOLONG;
	}
	if (stat(path, &st) == 0) {
		/* LMDB would take an empty file for a new store and start over silently. */
		if (st.st_size == 0) {
			set_err("%s is empty: the store was cut short or never written. "
				DAMAGED_ADVICE, path);
			return -EUCLEAN;
		}
		if ((uint64_t)st.st_size > map_size)
			map_size = (uint64_t)st.st_size;
	}

	s = calloc(1, sizeof(*s));
	if (!s) {
		set_err("out of memory");
		return -ENOMEM;
	}
	atomic_init(&s->ntxn, 0);
	atomic_init(&s->writing, false);
	rc = mdb_env_create(&s->env);
	if (rc != 0) {
		s->env = NULL;
		ret = mdb_fail(rc, "mdb_env_create");
		goto fail;
	}
	if ((rc = mdb_env_set_maxdbs(s->env, WJ_DB_COUNT + 2)) != 0 ||
	    (rc = mdb_env_set_maxreaders(s->env, WJ_STORE_MAXREADERS)) != 0 ||
	    (map_size && (rc = mdb_env_set_mapsize(s->env, map_size)) != 0)) {
		ret = mdb_fail(rc, "configure environment");
		goto fail;
	}
	rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600);
	if (rc != 0) {
		ret = mdb_fail(rc, "mdb_env_open");
		if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH) {
			set_err("%s is damaged (%s). " DAMAGED_ADVICE, path, mdb_strerror(rc));
			ret = -EUCLEAN;
		} else {
			set_err("cannot open store %s: %s", dir, mdb_strerror(rc));
		}
		goto fail;
	}
	ret = check_data_file(s, path);
	if (ret != 0)
		goto fail;
	int dead = 0;
	rc = mdb_reader_check(s->env, &dead);
	if (rc != 0) {
		ret = mdb_fail(rc, "mdb_reader_check");
		goto fail;
	}
	refresh_map_size(s);
	s->map_max = map_max > s->map_size ? map_max : s->map_size;
	ret = open_dbs(s, dir);
	if (ret != 0)
		goto fail;
	*out = s;
	return 0;
fail:
	if (s->env)
		mdb_env_close(s->env);
	free(s);
	return ret;
}

void wj_store_close(wj_store_t *s)
{
	if (!s)
		return;
	mdb_env_close(s->env);
	free(s);
}

int wj_store_sync(wj_store_t *s)
{
	int rc = mdb_env_sync(s->env, 1);
	return rc ? mdb_fail(rc, "mdb_env_sync") : 0;
}

uint64_t wj_store_commits(wj_store_t *s)
{
	return atomic_load(&s->commits);
}

uint64_t wj_store_map_size(const wj_store_t *s)
{
	return s->map_size;
}

int wj_store_reader_check(wj_store_t *s, int *dead)
{
	int n = 0;
	int rc = mdb_reader_check(s->env, &n);
	if (dead)
		*dead = n;
	return rc ? mdb_fail(rc, "mdb_reader_check") : 0;
}

void wj_store_set_max(wj_store_t *s, uint64_t map_max)
{
	s->map_max = map_max > s->map_size ? map_max : s->map_size;
}

int wj_store_grow(wj_store_t *s)
{
	if (atomic_load(&s->ntxn) != 0) {
		set_err("cannot grow the store map while transactions are open");
		return -EBUSY;
	}
	refresh_map_size(s);
	if (s->map_size >= s->map_max) {
		set_err("store map full at %" PRIu64 " bytes (map_max)", s->map_max);
		return -ENOSPC;
	}
	uint64_t size = s->map_size > s->map_max / 2 ? s->map_max : s->map_size * 2;
	int rc = mdb_env_set_mapsize(s->env, size);
	if (rc != 0)
		return mdb_fail(rc, "mdb_env_set_mapsize");
	refresh_map_size(s);
	return 0;
}

int wj_store_stat(wj_store_t *s, wj_store_stat_t *st)
{
	MDB_envinfo info;
	MDB_stat est;
	wj_txn_t t;
	int rc;

	memset(st, 0, sizeof(*st));
	int ret = wj_txn_begin(s, &t, false);
	if (ret != 0)
		return ret;
	if ((rc = mdb_env_info(s->env, &info)) != 0 || (rc = mdb_env_stat(s->env, &est)) != 0) {
		wj_txn_abort(&t);
		return mdb_fail(rc, "mdb_env_info");
	}
	st->map_size = info.me_mapsize;
	st->map_max = s->map_max;
	st->used_bytes = ((uint64_t)info.me_last_pgno + 1) * est.ms_psize;
	st->readers = info.me_numreaders;
	st->max_readers = info.me_maxreaders;
	for (int i = 0; i < WJ_DB_COUNT; i++)
		wj_txn_count(&t, (wj_db_t)i, &st->entries[i]);
	return wj_txn_commit(&t);
}

int wj_store_write(wj_store_t *s, int (*fn)(wj_txn_t *txn, void *arg), void *arg)
{
	for (int round = 0; round < WJ_STORE_GROW_ROUNDS; round++) {
		wj_txn_t t;
		int ret = wj_txn_begin(s, &t, true);
		if (ret != 0)
			return ret;
		ret = fn(&t, arg);
		if (ret == 0) {
			ret = wj_txn_commit(&t);
		} else {
			if (t.err == -ENOSPC)
				ret = -ENOSPC;
			wj_txn_abort(&t);
		}
		if (ret != -ENOSPC)
			return ret;
		ret = wj_store_grow(s);
		if (ret != 0)
			return ret;
	}
	set_err("store map full after %d growth rounds", WJ_STORE_GROW_ROUNDS);
	return -ENOSPC;
}

int wj_txn_begin(wj_store_t *s, wj_txn_t *txn, bool write)
{
	MDB_txn *mt = NULL;
	int rc;

	memset(txn, 0, sizeof(*txn));
	txn->store = s;
	txn->write = write;
	if (write && atomic_load(&s->writing) && pthread_equal(s->writer, pthread_self())) {
		/* LMDB would wait for ourselves forever. */
		set_err("write transaction already open in this thread");
		txn->err = -EDEADLK;
		return txn->err;
	}
	for (int attempt = 0;; attempt++) {
		rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &mt);
		if (rc != MDB_MAP_RESIZED || attempt >= 3)
			break;
		/* Another process grew the map beyond ours: adopt its size. */
		if (atomic_load(&s->ntxn) != 0) {
			set_err("store map grown by another process; end open transactions and retry");
			txn->err = -EAGAIN;
			return txn->err;
		}
		rc = mdb_env_set_mapsize(s->env, 0);
		if (rc != 0)
			break;
		refresh_map_size(s);
		if (s->map_max < s->map_size)
			s->map_max = s->map_size;
	}
	if (rc != 0) {
		txn->err = mdb_fail(rc, "mdb_txn_begin");
		return txn->err;
	}
	txn->txn = mt;
	atomic_fetch_add(&s->ntxn, 1);
	if (write) {
		s->writer = pthread_self();
		atomic_store(&s->writing, true);
	}
	return 0;
}

static void txn_end(wj_txn_t *t)
{
	t->txn = NULL;
	if (t->write)
		atomic_store(&t->store->writing, false);
	atomic_fetch_sub(&t->store->ntxn, 1);
}

int wj_txn_get(wj_txn_t *t, wj_db_t db, const void *k, size_t kl, wj_val_t *out)
{
	if (t->err)
		return t->err;
	if (!t->txn)
		return t->err = -EINVAL;
	MDB_val key = {.mv_size = kl, .mv_data = (void *)k}, val;
	int rc = mdb_get(t->txn, t->store->dbi[db], &key, &val);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc != 0)
		return t->err = mdb_fail(rc, "mdb_get");
	out->data = val.mv_data;
	out->len = val.mv_size;
	return 0;
}

void wj_txn_put(wj_txn_t *t, wj_db_t db, const void *k, size_t kl, const void *v, size_t vl)
{
	if (t->err)
		return;
	if (!t->txn) {
		t->err = -EINVAL;
		return;
	}
	MDB_val key = {.mv_size = kl, .mv_data = (void *)k};
	MDB_val val = {.mv_size = vl, .mv_data = (void *)v};
	int rc = mdb_put(t->txn, t->store->dbi[db], &key, &val, 0);
	if (rc != 0)
		t->err = mdb_fail(rc, "mdb_put");
}

void wj_txn_del(wj_txn_t *t, wj_db_t db, const void *k, size_t kl)
{
	if (t->err)
		return;
	if (!t->txn) {
		t->err = -EINVAL;
		return;
	}
	MDB_val key = {.mv_size = kl, .mv_data = (void *)k};
	int rc = mdb_del(t->txn, t->store->dbi[db], &key, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND)
		t->err = mdb_fail(rc, "mdb_del");
}

int wj_txn_count(wj_txn_t *t, wj_db_t db, size_t *n)
{
	MDB_stat st;
	*n = 0;
	if (t->err)
		return t->err;
	if (!t->txn)
		return t->err = -EINVAL;
	int rc = mdb_stat(t->txn, t->store->dbi[db], &st);
	if (rc != 0)
		return t->err = mdb_fail(rc, "mdb_stat");
	*n = st.ms_entries;
	return 0;
}

int wj_txn_seq_next(wj_txn_t *t, uint64_t *seq)
{
	wj_val_t v;
	uint64_t cur = 0;
	uint8_t buf[8];

	int ret = wj_txn_get(t, WJ_DB_META, "seq", 3, &v);
	if (ret == 0 && v.len == 8)
		cur = wj_u64be_get(v.data);
	else if (ret == 0)
		return t->err = -EPROTO;
	else if (ret != -ENOENT)
		return ret;
	wj_key_u64be(buf, cur + 1);
	wj_txn_put(t, WJ_DB_META, "seq", 3, buf, sizeof(buf));
	if (t->err)
		return t->err;
	*seq = cur + 1;
	return 0;
}

int wj_txn_commit(wj_txn_t *t)
{
	if (!t->txn)
		return t->err ? t->err : -EINVAL;
	if (t->err) {
		wj_txn_abort(t);
		return t->err;
	}
	int rc = mdb_txn_commit(t->txn);
	bool write = t->write;
	txn_end(t);
	if (rc != 0)
		return t->err = mdb_fail(rc, "mdb_txn_commit");
	if (write)
		atomic_fetch_add(&t->store->commits, 1);
	return 0;
}

void wj_txn_abort(wj_txn_t *t)
{
	if (!t->txn)
		return;
	mdb_txn_abort(t->txn);
	txn_end(t);
}

int wj_iter_open(wj_txn_t *t, wj_db_t db, wj_iter_t *it)
{
	memset(it, 0, sizeof(*it));
	it->txn = t;
	if (t->err)
		return t->err;
	if (!t->txn)
		return t->err = -EINVAL;
	MDB_cursor *cur = NULL;
	int rc = mdb_cursor_open(t->txn, t->store->dbi[db], &cur);
	if (rc != 0)
		return t->err = mdb_fail(rc, "mdb_cursor_open");
	it->cur = cur;
	return 0;
}

static int iter_get(wj_iter_t *it, MDB_val *key, MDB_cursor_op op)
{
	MDB_val val = {0};
	it->valid = false;
	if (it->txn->err)
		return it->txn->err;
	if (!it->cur)
		return it->txn->err = -EINVAL;
	int rc = mdb_cursor_get(it->cur, key, &val, op);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc != 0)
		return it->txn->err = mdb_fail(rc, "mdb_cursor_get");
	it->key.data = key->mv_data;
	it->key.len = key->mv_size;
	it->val.data = val.mv_data;
	it->val.len = val.mv_size;
	it->valid = true;
	return 0;
}

int wj_iter_seek(wj_iter_t *it, const void *key, size_t kl)
{
	MDB_val k = {.mv_size = kl, .mv_data = (void *)key};
	return iter_get(it, &k, key && kl ? MDB_SET_RANGE : MDB_FIRST);
}

int wj_iter_next(wj_iter_t *it)
{
	MDB_val k = {0};
	return iter_get(it, &k, MDB_NEXT);
}

wj_val_t wj_iter_key(const wj_iter_t *it)
{
	return it->key;
}

wj_val_t wj_iter_val(const wj_iter_t *it)
{
	return it->val;
}

int wj_iter_del(wj_iter_t *it)
{
	if (it->txn->err)
		return it->txn->err;
	if (!it->cur || !it->valid)
		return it->txn->err = -EINVAL;
	int rc = mdb_cursor_del(it->cur, 0);
	it->valid = false;
	if (rc != 0)
		return it->txn->err = mdb_fail(rc, "mdb_cursor_del");
	return 0;
}

void wj_iter_close(wj_iter_t *it)
{
	if (it->cur)
		mdb_cursor_close(it->cur);
	it->cur = NULL;
	it->valid = false;
}

void wj_txn_put_json(wj_txn_t *t, wj_db_t db, const void *k, size_t kl, const json_t *v)
{
	if (t->err)
		return;
	char *s = json_dumps(v, JSON_COMPACT);
	if (!s) {
		t->err = -ENOMEM;
		return;
	}
	wj_txn_put(t, db, k, kl, s, strlen(s));
	free(s);
}

json_t *wj_txn_get_json(wj_txn_t *t, wj_db_t db, const void *k, size_t kl)
{
	wj_val_t v;
	if (wj_txn_get(t, db, k, kl, &v) < 0)
		return NULL;
	return json_loadb(v.data, v.len, 0, NULL);
}
