/* Unit tests for lib/store: schema, persistence, key order, first-error transactions, crash
 * safety with killed writers, map growth and a second process reading while we write. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/store.h"

#define MiB (1024ull * 1024ull)

typedef struct fixture {
	char base[256];
	char dir[300];
} fixture_t;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	fixture_t *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	const char *tmp = getenv("TMPDIR");
	snprintf(f->base, sizeof(f->base), "%s/wj_store_XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->base)) {
		free(f);
		return -1;
	}
	snprintf(f->dir, sizeof(f->dir), "%s/state", f->base);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture_t *f = *state;
	chmod(f->base, 0700);
	nftw(f->base, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Wait (bounded) for a child; returns its wait status. Kills it on timeout. */
static int wait_child(pid_t pid, int timeout_ms)
{
	int status = 0;
	for (int waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		if (r < 0)
			return -1;
		if (waited >= timeout_ms) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return -1;
		}
		usleep(10000);
	}
}

/* Read one byte from fd within timeout_ms. 0 or -1. */
static int read_byte(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;
	if (poll(&p, 1, timeout_ms) != 1)
		return -1;
	return read(fd, &c, 1) == 1 ? 0 : -1;
}

/* Write one byte. 0 or -1 (the reader is gone; SIGPIPE is ignored). */
static int write_byte(int fd)
{
	char c = 'x';
	return write(fd, &c, 1) == 1 ? 0 : -1;
}

static void put_u64(wj_txn_t *t, wj_db_t db, uint64_t k, uint64_t v)
{
	uint8_t kb[8], vb[8];
	wj_key_u64be(kb, k);
	wj_key_u64be(vb, v);
	wj_txn_put(t, db, kb, 8, vb, 8);
}

static int get_u64(wj_txn_t *t, wj_db_t db, uint64_t k, uint64_t *v)
{
	uint8_t kb[8];
	wj_val_t val;
	wj_key_u64be(kb, k);
	int ret = wj_txn_get(t, db, kb, 8, &val);
	if (ret == 0) {
		if (val.len != 8)
			return -EPROTO;
		*v = wj_u64be_get(val.data);
	}
	return ret;
}

static void test_u64be(void **state)
{
	(void)state;
	uint8_t b[8];
	wj_key_u64be(b, 0x0102030405060708ull);
	const uint8_t want[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	assert_memory_equal(b, want, 8);
	assert_true(wj_u64be_get(b) == 0x0102030405060708ull);
	wj_key_u64be(b, UINT64_MAX);
	assert_true(wj_u64be_get(b) == UINT64_MAX);
	assert_string_equal(wj_db_name(WJ_DB_QUEUE), "queue");
	assert_string_equal(wj_db_name(WJ_DB_LOOKUP), "lookup");
}

/* A store of schema version 1 kept the order inside the doc record; opening it moves the order
 * to the orders database as canonical text and leaves everything else as it was. */
static void test_upgrade_v1(void **state)
{
	fixture_t *f = *state;
	wj_store_t *s = NULL;
	wj_txn_t t;
	wj_val_t v;
	static const char k1[] = "pd\0001", k2[] = "pd\0002";
	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 8 * MiB, &s), 0);
	assert_int_equal(wj_txn_begin(s, &t, true), 0);
	const uint8_t v1[4] = {0, 0, 0, 1};
	wj_txn_put(&t, WJ_DB_META, "schema", 6, v1, 4);
	const char *queued = "{\"state\":\"queued\",\"hash\":\"ab\",\"order\":"
			     "{\"z\":1,\"stockin_no\":\"RK1\",\"a\":[{\"y\":\"2\",\"b\":\"盘\"}]}}";
	const char *saved = "{\"state\":\"saved\",\"bill_no\":\"B1\"}";
	wj_txn_put(&t, WJ_DB_DOCS, k1, sizeof(k1) - 1, queued, strlen(queued));
	wj_txn_put(&t, WJ_DB_DOCS, k2, sizeof(k2) - 1, saved, strlen(saved));
	assert_int_equal(wj_txn_commit(&t), 0);
	wj_store_close(s);

	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 8 * MiB, &s), 0);
	assert_int_equal(wj_txn_begin(s, &t, false), 0);
	assert_int_equal(wj_txn_get(&t, WJ_DB_META, "schema", 6, &v), 0);
	const uint8_t v2[4] = {0, 0, 0, 2};
	assert_memory_equal(v.data, v2, 4);
	assert_int_equal(wj_txn_get(&t, WJ_DB_DOCS, k1, sizeof(k1) - 1, &v), 0);
	assert_int_equal(v.len, strlen("{\"state\":\"queued\",\"hash\":\"ab\"}"));
	assert_memory_equal(v.data, "{\"state\":\"queued\",\"hash\":\"ab\"}", v.len);
	assert_int_equal(wj_txn_get(&t, WJ_DB_ORDERS, k1, sizeof(k1) - 1, &v), 0);
	const char *canon = "{\"a\":[{\"b\":\"盘\",\"y\":\"2\"}],\"stockin_no\":\"RK1\",\"z\":1}";
	assert_int_equal(v.len, strlen(canon));
	assert_memory_equal(v.data, canon, v.len);
	assert_int_equal(wj_txn_get(&t, WJ_DB_DOCS, k2, sizeof(k2) - 1, &v), 0);
	assert_memory_equal(v.data, saved, strlen(saved));
	assert_int_equal(wj_txn_get(&t, WJ_DB_ORDERS, k2, sizeof(k2) - 1, &v), -ENOENT);
	wj_txn_abort(&t);
	wj_store_close(s);
}

static void test_open_schema(void **state)
{
	fixture_t *f = *state;
	wj_store_t *s = NULL;
	wj_txn_t t;
	wj_val_t v;
	struct stat st;
	char path[400];

	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 8 * MiB, &s), 0);
	assert_non_null(s);
	assert_int_equal(stat(f->dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	assert_int_equal(stat(path, &st), 0);

	assert_int_equal(wj_txn_begin(s, &t, false), 0);
	assert_int_equal(wj_txn_get(&t, WJ_DB_META, "schema", 6, &v), 0);
	assert_int_equal(v.len, 4);
	const uint8_t want[4] = {0, 0, 0, 2};
	assert_memory_equal(v.data, want, 4);
	for (int i = 0; i < WJ_DB_COUNT; i++) {
		size_t n = 99;
		assert_int_equal(wj_txn_count(&t, (wj_db_t)i, &n), 0);
		assert_int_equal(n, i == WJ_DB_META ? 1 : 0);
	}
	/* growing is refused while a transaction is open */
	assert_int_equal(wj_store_grow(s), -EBUSY);
	assert_int_equal(wj_txn_commit(&t), 0);
	wj_store_close(s);

	/* reopen: same schema, fine */
	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 8 * MiB, &s), 0);
	assert_int_equal(wj_txn_begin(s, &t, true), 0);
	const uint8_t other[4] = {0, 0, 0, 3};
	wj_txn_put(&t, WJ_DB_META, "schema", 6, other, 4);
	assert_int_equal(wj_txn_commit(&t), 0);
	wj_store_close(s);

	s = (wj_store_t *)1;
	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 8 * MiB, &s), -EPROTO);
	assert_null(s);
	assert_non_null(strstr(wj_store_strerror(), "schema version 3"));
	assert_non_null(strstr(wj_store_strerror(), "needs 2"));

	/* paths that cannot be a store */
	snprintf(path, sizeof(path), "%s/missing/state", f->base);
	assert_int_equal(wj_store_open(path, 1 * MiB, 8 * MiB, &s), -ENOENT);
	assert_non_null(strstr(wj_store_strerror(), "cannot create"));
	snprintf(path, sizeof(path), "%s/file", f->base);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(wj_store_open(path, 1 * MiB, 8 * MiB, &s), -ENOTDIR);
	snprintf(path, sizeof(path), "%s/file/state", f->base);
	assert_int_equal(wj_store_open(path, 1 * MiB, 8 * MiB, &s), -ENOTDIR);
	if (geteuid() != 0) {
		assert_int_equal(chmod(f->base, 0500), 0);
		snprintf(path, sizeof(path), "%s/denied", f->base);
		assert_int_equal(wj_store_open(path, 1 * MiB, 8 * MiB, &s), -EACCES);
		assert_int_equal(chmod(f->base, 0700), 0);
	}
}

/* Fill a store with n values of len bytes (keys 0..n-1 in WJ_DB_ORDERS). */
static void fill_store(const char *dir, unsigned n, size_t len)
{
	wj_store_t *s = NULL;
	wj_txn_t t;
	uint8_t *val = calloc(1, len);
	assert_non_null(val);
	assert_int_equal(wj_store_open(dir, 8 * MiB, 64 * MiB, &s), 0);
	assert_int_equal(wj_txn_begin(s, &t, true), 0);
	for (unsigned i = 0; i < n; i++) {
		uint8_t kb[8];
		wj_key_u64be(kb, i);
		memset(val, (int)(i & 0xff), len);
		wj_txn_put(&t, WJ_DB_ORDERS, kb, 8, val, len);
	}
	assert_int_equal(wj_txn_commit(&t), 0);
	wj_store_close(s);
	free(val);
}

/* A damaged data file (truncated, emptied, overwritten) is refused at open with advice, never
 * read: a page past the end of the file would kill the process with SIGBUS. */
static void test_damaged_file(void **state)
{
	fixture_t *f = *state;
	wj_store_t *s = (wj_store_t *)1;
	char path[400];
	struct stat st;
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	fill_store(f->dir, 500, 3000);
	assert_int_equal(stat(path, &st), 0);
	off_t full = st.st_size;
	assert_true(full > 1 * (off_t)MiB);

	assert_int_equal(truncate(path, full / 2), 0);
	assert_int_equal(wj_store_open(f->dir, 8 * MiB, 64 * MiB, &s), -EUCLEAN);
	assert_null(s);
	const char *e = wj_store_strerror();
	assert_non_null(strstr(e, "data.mdb is truncated"));
	assert_non_null(strstr(e, "Restore the state directory from a backup"));
	assert_non_null(strstr(e, "move it aside"));
	/* the same on a second try: nothing was rewritten */
	assert_int_equal(wj_store_open(f->dir, 8 * MiB, 64 * MiB, &s), -EUCLEAN);

	/* cut inside the meta pages, emptied, or not an LMDB file at all */
	assert_int_equal(truncate(path, 4096 + 100), 0);
	assert_int_equal(wj_store_open(f->dir, 8 * MiB, 64 * MiB, &s), -EUCLEAN);
	assert_non_null(strstr(wj_store_strerror(), "is damaged"));
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(wj_store_open(f->dir, 8 * MiB, 64 * MiB, &s), -EUCLEAN);
	assert_non_null(strstr(wj_store_strerror(), "data.mdb is empty"));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0); /* not silently made a new store */
	int fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	char junk[3 * 4096];
	memset(junk, 'x', sizeof(junk));
	assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);
	assert_int_equal(wj_store_open(f->dir, 8 * MiB, 64 * MiB, &s), -EUCLEAN);
	assert_non_null(strstr(wj_store_strerror(), "is damaged"));

	/* an intact store of the same size opens */
	assert_int_equal(unlink(path), 0);
	fill_store(f->dir, 500, 3000);
	assert_int_equal(wj_store_open(f->dir, 8 * MiB, 64 * MiB, &s), 0);
	wj_store_close(s);
}

static void test_persist_order(void **state)
{
	fixture_t *f = *state;
	wj_store_t *s = NULL;
	wj_txn_t t;
	wj_val_t v;
	wj_iter_t it;
	size_t n;
	const uint64_t keys[] = {65536, 1, 256, 255, 0, UINT64_MAX, 257};
	const uint64_t sorted[] = {0, 1, 255, 256, 257, 65536, UINT64_MAX};
	const size_t nkeys = sizeof(keys) / sizeof(keys[0]);

	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 8 * MiB, &s), 0);
	assert_int_equal(wj_txn_begin(s, &t, true), 0);
	for (int i = 1; i < WJ_DB_COUNT; i++) {
		if (i != WJ_DB_DELAYED)
			wj_txn_put(&t, (wj_db_t)i, "k", 1, wj_db_name((wj_db_t)i),
				   strlen(wj_db_name((wj_db_t)i)));
	}
	for (size_t i = 0; i < nkeys; i++)
		put_u64(&t, WJ_DB_DELAYED, keys[i], keys[i] ^ 0x5a5a);
	uint64_t seq = 0;
	assert_int_equal(wj_txn_seq_next(&t, &seq), 0);
	assert_true(seq == 1);
	assert_int_equal(wj_txn_seq_next(&t, &seq), 0);
	assert_true(seq == 2);
	assert_int_equal(wj_txn_commit(&t), 0);
	assert_int_equal(wj_store_sync(s), 0);
	wj_store_close(s);

	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 8 * MiB, &s), 0);
	assert_int_equal(wj_txn_begin(s, &t, false), 0);
	for (int i = 1; i < WJ_DB_COUNT; i++) {
		if (i == WJ_DB_DELAYED) {
			assert_int_equal(wj_txn_get(&t, (wj_db_t)i, "k", 1, &v), -ENOENT);
			continue;
		}
		const char *name = wj_db_name((wj_db_t)i);
		assert_int_equal(wj_txn_get(&t, (wj_db_t)i, "k", 1, &v), 0);
		assert_int_equal(v.len, strlen(name));
		assert_memory_equal(v.data, name, v.len);
	}
	assert_int_equal(wj_txn_get(&t, WJ_DB_META, "k", 1, &v), -ENOENT);
	assert_int_equal(wj_txn_get(&t, WJ_DB_DOCS, "nope", 4, &v), -ENOENT);
	assert_int_equal(t.err, 0); /* a missing key is not sticky */
	assert_int_equal(wj_txn_count(&t, WJ_DB_DELAYED, &n), 0);
	assert_int_equal(n, nkeys);
	assert_int_equal(wj_txn_count(&t, WJ_DB_META, &n), 0);
	assert_int_equal(n, 2); /* schema, seq */

	/* numeric order */
	assert_int_equal(wj_iter_open(&t, WJ_DB_DELAYED, &it), 0);
	size_t i = 0;
	int r;
	for (r = wj_iter_seek(&it, NULL, 0); r == 0; r = wj_iter_next(&it), i++) {
		assert_true(i < nkeys);
		wj_val_t k = wj_iter_key(&it), val = wj_iter_val(&it);
		assert_int_equal(k.len, 8);
		assert_int_equal(val.len, 8);
		assert_true(wj_u64be_get(k.data) == sorted[i]);
		assert_true(wj_u64be_get(val.data) == (sorted[i] ^ 0x5a5a));
	}
	assert_int_equal(r, -ENOENT);
	assert_int_equal(i, nkeys);

	/* seek: first key >= the given one */
	uint8_t kb[9];
	wj_key_u64be(kb, 256);
	assert_int_equal(wj_iter_seek(&it, kb, 8), 0);
	assert_true(wj_u64be_get(wj_iter_key(&it).data) == 256);
	wj_key_u64be(kb, 258);
	assert_int_equal(wj_iter_seek(&it, kb, 8), 0);
	assert_true(wj_u64be_get(wj_iter_key(&it).data) == 65536);
	assert_int_equal(wj_iter_next(&it), 0);
	assert_true(wj_u64be_get(wj_iter_key(&it).data) == UINT64_MAX);
	assert_int_equal(wj_iter_next(&it), -ENOENT);
	memset(kb, 0xff, sizeof(kb));
	assert_int_equal(wj_iter_seek(&it, kb, 9), -ENOENT);
	assert_int_equal(wj_iter_seek(&it, "", 0), 0); /* the empty key sorts first */
	assert_true(wj_u64be_get(wj_iter_key(&it).data) == 0);
	assert_int_equal(t.err, 0);
	wj_iter_close(&it);
	assert_int_equal(wj_txn_commit(&t), 0);

	/* delete while iterating: drop every entry with an odd key */
	assert_int_equal(wj_txn_begin(s, &t, true), 0);
	assert_int_equal(wj_iter_open(&t, WJ_DB_DELAYED, &it), 0);
	size_t seen = 0;
	r = wj_iter_seek(&it, NULL, 0);
	while (r == 0) {
		seen++;
		if (wj_u64be_get(wj_iter_key(&it).data) & 1)
			assert_int_equal(wj_iter_del(&it), 0);
		r = wj_iter_next(&it);
	}
	assert_int_equal(r, -ENOENT);
	assert_int_equal(seen, nkeys);
	wj_iter_close(&it);
	wj_txn_del(&t, WJ_DB_DOCS, "absent", 6); /* not an error */
	wj_txn_del(&t, WJ_DB_DOCS, "k", 1);
	assert_int_equal(t.err, 0);
	assert_int_equal(wj_txn_seq_next(&t, &seq), 0);
	assert_true(seq == 3);
	assert_int_equal(wj_txn_commit(&t), 0);

	assert_int_equal(wj_txn_begin(s, &t, false), 0);
	assert_int_equal(wj_txn_count(&t, WJ_DB_DELAYED, &n), 0);
	assert_int_equal(n, 3);
	const uint64_t left[] = {0, 256, 65536};
	assert_int_equal(wj_iter_open(&t, WJ_DB_DELAYED, &it), 0);
	i = 0;
	for (r = wj_iter_seek(&it, NULL, 0); r == 0; r = wj_iter_next(&it), i++) {
		assert_true(i < 3);
		assert_true(wj_u64be_get(wj_iter_key(&it).data) == left[i]);
	}
	assert_int_equal(r, -ENOENT);
	assert_int_equal(i, 3);
	wj_iter_close(&it);
	assert_int_equal(wj_txn_get(&t, WJ_DB_DOCS, "k", 1, &v), -ENOENT);
	assert_int_equal(wj_txn_commit(&t), 0);
	wj_store_close(s);
}

static int put_then_fail(wj_txn_t *t, void *arg)
{
	(*(int *)arg)++;
	wj_txn_put(t, WJ_DB_DOCS, "w", 1, "1", 1);
	return -ECANCELED;
}

static int put_bad_key(wj_txn_t *t, void *arg)
{
	(*(int *)arg)++;
	wj_txn_put(t, WJ_DB_DOCS, "w", 1, "1", 1);
	wj_txn_put(t, WJ_DB_DOCS, "", 0, "1", 1); /* empty key: invalid */
	return 0;                                 /* the error is still in t->err */
}

static void test_first_error(void **state)
{
	fixture_t *f = *state;
	wj_store_t *s = NULL;
	wj_txn_t t;
	wj_val_t v;
	MDB_env *env;

	assert_int_equal(mdb_env_create(&env), 0);
	size_t maxkey = (size_t)mdb_env_get_maxkeysize(env);
	mdb_env_close(env);
	char *big = malloc(maxkey + 1);
	assert_non_null(big);
	memset(big, 'k', maxkey + 1);

	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 8 * MiB, &s), 0);
	assert_int_equal(wj_txn_begin(s, &t, true), 0);
	wj_txn_put(&t, WJ_DB_DOCS, "a", 1, "1", 1);
	wj_txn_put(&t, WJ_DB_DOCS, big, maxkey, "max", 3); /* the largest key is fine */
	assert_int_equal(t.err, 0);
	wj_txn_put(&t, WJ_DB_DOCS, big, maxkey + 1, "x", 1);
	assert_int_equal(t.err, -EINVAL);
	assert_non_null(strstr(wj_store_strerror(), "mdb_put"));
	wj_txn_put(&t, WJ_DB_DOCS, "b", 1, "2", 1); /* no-op */
	wj_txn_del(&t, WJ_DB_DOCS, "a", 1);          /* no-op */
	assert_int_equal(wj_txn_get(&t, WJ_DB_DOCS, "a", 1, &v), -EINVAL);
	assert_int_equal(t.err, -EINVAL);
	assert_int_equal(wj_txn_commit(&t), -EINVAL);
	assert_null(t.txn);
	wj_txn_abort(&t); /* harmless after the end */

	assert_int_equal(wj_txn_begin(s, &t, false), 0);
	size_t n = 9;
	assert_int_equal(wj_txn_count(&t, WJ_DB_DOCS, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(wj_txn_get(&t, WJ_DB_DOCS, "a", 1, &v), -ENOENT);
	/* writing in a read transaction fails too */
	wj_txn_put(&t, WJ_DB_DOCS, "c", 1, "3", 1);
	assert_int_equal(t.err, -EACCES);
	assert_int_equal(wj_txn_commit(&t), -EACCES);

	/* wj_store_write: fn's own error, or an error kept in the txn, aborts (no retry) */
	int runs = 0;
	assert_int_equal(wj_store_write(s, put_then_fail, &runs), -ECANCELED);
	assert_int_equal(runs, 1);
	assert_int_equal(wj_store_write(s, put_bad_key, &runs), -EINVAL);
	assert_int_equal(runs, 2);
	assert_int_equal(wj_txn_begin(s, &t, false), 0);
	assert_int_equal(wj_txn_get(&t, WJ_DB_DOCS, "w", 1, &v), -ENOENT);
	wj_txn_abort(&t);

	/* a second write txn (or wj_store_write) in the thread holding one is refused, not hung */
	wj_txn_t w2;
	assert_int_equal(wj_txn_begin(s, &t, true), 0);
	assert_int_equal(wj_txn_begin(s, &w2, true), -EDEADLK);
	assert_int_equal(wj_store_write(s, put_then_fail, &runs), -EDEADLK);
	assert_int_equal(runs, 2);
	assert_int_equal(wj_txn_begin(s, &w2, false), 0); /* reads are fine */
	wj_txn_abort(&w2);
	wj_txn_abort(&t);
	assert_int_equal(wj_txn_begin(s, &w2, true), 0);
	assert_int_equal(wj_txn_commit(&w2), 0);

	/* a zeroed, never begun txn */
	memset(&t, 0, sizeof(t));
	wj_txn_abort(&t);
	free(big);
	wj_store_close(s);
}

/* Child: 100 committed entries, then 1000 more in a write txn that never commits, a read txn
 * holding a reader slot, and death by SIGKILL. */
static void crash_child(const char *dir, int ready_fd, int go_fd)
{
	wj_store_t *s;
	wj_txn_t r, w;
	if (wj_store_open(dir, 4 * MiB, 64 * MiB, &s) != 0)
		_exit(10);
	for (uint64_t b = 0; b < 10; b++) {
		if (wj_txn_begin(s, &w, true) != 0)
			_exit(11);
		for (uint64_t i = 0; i < 10; i++)
			put_u64(&w, WJ_DB_QUEUE, b * 10 + i, b * 10 + i);
		if (wj_txn_commit(&w) != 0)
			_exit(12);
	}
	if (write_byte(ready_fd) != 0 || read_byte(go_fd, 20000) != 0)
		_exit(13);
	if (wj_txn_begin(s, &r, false) != 0 || wj_txn_begin(s, &w, true) != 0)
		_exit(14);
	for (uint64_t i = 100; i < 1100; i++)
		put_u64(&w, WJ_DB_QUEUE, i, i);
	if (w.err)
		_exit(15);
	raise(SIGKILL);
	_exit(16);
}

static void test_crash_uncommitted(void **state)
{
	fixture_t *f = *state;
	int ready[2], go[2];
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		close(go[1]);
		crash_child(f->dir, ready[1], go[0]);
	}
	close(ready[1]);
	close(go[0]);
	assert_int_equal(read_byte(ready[0], 20000), 0);

	/* open while the child lives (as the daemon would while wdt2jdyctl dies) */
	wj_store_t *s = NULL;
	wj_txn_t t;
	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 64 * MiB, &s), 0);
	assert_int_equal(write_byte(go[1]), 0);
	int status = wait_child(pid, 30000);
	close(ready[0]);
	close(go[1]);
	assert_true(status != -1);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);

	/* the dead child's reader slot is cleared, once */
	int dead = -1;
	assert_int_equal(wj_store_reader_check(s, &dead), 0);
	assert_int_equal(dead, 1);
	assert_int_equal(wj_store_reader_check(s, &dead), 0);
	assert_int_equal(dead, 0);

	/* the writer lock the child held is recovered: we can write */
	assert_int_equal(wj_txn_begin(s, &t, true), 0);
	size_t n = 0;
	assert_int_equal(wj_txn_count(&t, WJ_DB_QUEUE, &n), 0);
	assert_int_equal(n, 100);
	put_u64(&t, WJ_DB_DOCS, 1, 1);
	assert_int_equal(wj_txn_commit(&t), 0);
	wj_store_close(s);

	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 64 * MiB, &s), 0);
	assert_int_equal(wj_txn_begin(s, &t, false), 0);
	assert_int_equal(wj_txn_count(&t, WJ_DB_QUEUE, &n), 0);
	assert_int_equal(n, 100);
	for (uint64_t i = 0; i < 1100; i++) {
		uint64_t v = 0;
		int r = get_u64(&t, WJ_DB_QUEUE, i, &v);
		if (i < 100) {
			assert_int_equal(r, 0);
			assert_true(v == i);
		} else {
			assert_int_equal(r, -ENOENT);
		}
	}
	assert_int_equal(wj_txn_commit(&t), 0);
	wj_store_close(s);

}

/* Child: many small committed txns, each a pair a:i, b:i plus counter = pairs, until killed. */
static void pairs_child(const char *dir, int ready_fd)
{
	wj_store_t *s;
	wj_txn_t t;
	if (wj_store_open(dir, 1 * MiB, 64 * MiB, &s) != 0)
		_exit(20);
	uint64_t start = 0;
	if (wj_txn_begin(s, &t, false) != 0)
		_exit(21);
	int r = get_u64(&t, WJ_DB_META, 0, &start);
	if (r != 0 && r != -ENOENT)
		_exit(22);
	wj_txn_abort(&t);
	time_t until = time(NULL) + 20;
	for (uint64_t i = start; i < start + 1000000 && time(NULL) < until; i++) {
		if (wj_txn_begin(s, &t, true) != 0)
			_exit(23);
		put_u64(&t, WJ_DB_DOCS, i, i);
		put_u64(&t, WJ_DB_REVIEW, i, i);
		put_u64(&t, WJ_DB_META, 0, i + 1);
		if (wj_txn_commit(&t) != 0)
			_exit(24);
		if (i == start && write_byte(ready_fd) != 0)
			_exit(25);
	}
	_exit(0);
}

static void test_crash_random_kill(void **state)
{
	fixture_t *f = *state;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	uint64_t prev = 0;
	for (int round = 0; round < 4; round++) {
		int ready[2];
		assert_int_equal(pipe(ready), 0);
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(ready[0]);
			pairs_child(f->dir, ready[1]);
		}
		close(ready[1]);
		assert_int_equal(read_byte(ready[0], 20000), 0);
		close(ready[0]);
		usleep(5000 + (useconds_t)(rand() % 200) * 1000);
		assert_int_equal(kill(pid, SIGKILL), 0);
		int status = wait_child(pid, 30000);
		assert_true(status != -1);
		assert_true(WIFSIGNALED(status));

		wj_store_t *s = NULL;
		wj_txn_t t;
		size_t na = 0, nb = 0;
		uint64_t count = 0;
		assert_int_equal(wj_store_open(f->dir, 1 * MiB, 64 * MiB, &s), 0);
		assert_int_equal(wj_txn_begin(s, &t, false), 0);
		assert_int_equal(get_u64(&t, WJ_DB_META, 0, &count), 0);
		assert_true(count > prev); /* the child committed at least one pair this round */
		assert_int_equal(wj_txn_count(&t, WJ_DB_DOCS, &na), 0);
		assert_int_equal(wj_txn_count(&t, WJ_DB_REVIEW, &nb), 0);
		assert_int_equal(na, count);
		assert_int_equal(nb, count);
		for (uint64_t i = 0; i < count + 2; i++) {
			uint64_t a = 0, b = 0;
			int ra = get_u64(&t, WJ_DB_DOCS, i, &a);
			int rb = get_u64(&t, WJ_DB_REVIEW, i, &b);
			assert_int_equal(ra, rb);
			assert_int_equal(ra, i < count ? 0 : -ENOENT);
			if (ra == 0)
				assert_true(a == i && b == i);
		}
		assert_int_equal(wj_txn_commit(&t), 0);
		wj_store_close(s);
		prev = count;
	}
}

typedef struct chunk {
	uint64_t first; /* first key */
	unsigned n;     /* values */
	size_t len;     /* bytes per value */
	unsigned runs;  /* times fn ran */
} chunk_t;

static void fill_value(uint8_t *buf, size_t len, uint64_t key)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(key * 31 + i);
}

static int write_chunk(wj_txn_t *t, void *arg)
{
	chunk_t *c = arg;
	uint8_t *buf = malloc(c->len);
	if (!buf)
		return -ENOMEM;
	c->runs++;
	for (unsigned i = 0; i < c->n; i++) {
		uint8_t kb[8];
		wj_key_u64be(kb, c->first + i);
		fill_value(buf, c->len, c->first + i);
		wj_txn_put(t, WJ_DB_DOCS, kb, 8, buf, c->len);
	}
	free(buf);
	return t->err;
}

static int delete_chunk(wj_txn_t *t, void *arg)
{
	chunk_t *c = arg;
	for (unsigned i = 0; i < c->n; i++) {
		uint8_t kb[8];
		wj_key_u64be(kb, c->first + i);
		wj_txn_del(t, WJ_DB_DOCS, kb, 8);
	}
	return 0;
}

static void check_values(wj_store_t *s, uint64_t first, uint64_t n, size_t len)
{
	wj_txn_t t;
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	assert_int_equal(wj_txn_begin(s, &t, false), 0);
	for (uint64_t k = first; k < first + n; k++) {
		uint8_t kb[8];
		wj_val_t v;
		wj_key_u64be(kb, k);
		assert_int_equal(wj_txn_get(&t, WJ_DB_DOCS, kb, 8, &v), 0);
		assert_int_equal(v.len, len);
		fill_value(buf, len, k);
		assert_memory_equal(v.data, buf, len);
	}
	assert_int_equal(wj_txn_commit(&t), 0);
	free(buf);
}

static void test_growth(void **state)
{
	fixture_t *f = *state;
	wj_store_t *s = NULL;
	wj_store_stat_t st;
	char path[400];
	struct stat fst;

	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 64 * MiB, &s), 0);
	assert_true(wj_store_map_size(s) == 1 * MiB);
	unsigned runs = 0;
	for (uint64_t c = 0; c < 20; c++) {
		chunk_t ch = {.first = c * 256, .n = 256, .len = 4000};
		assert_int_equal(wj_store_write(s, write_chunk, &ch), 0);
		runs += ch.runs;
	}
	assert_true(runs > 20); /* some chunks were re-run after growing */
	assert_true(wj_store_map_size(s) >= 20 * MiB);
	assert_true(wj_store_map_size(s) <= 64 * MiB);
	assert_int_equal(wj_store_stat(s, &st), 0);
	assert_true(st.map_size == wj_store_map_size(s));
	assert_true(st.map_max == 64 * MiB);
	assert_true(st.used_bytes >= 20 * MiB);
	assert_true(st.used_bytes <= st.map_size);
	assert_int_equal(st.entries[WJ_DB_DOCS], 20 * 256);
	assert_int_equal(st.entries[WJ_DB_META], 1);
	assert_true(st.max_readers == 126);
	check_values(s, 0, 20 * 256, 4000);
	wj_store_close(s);

	/* the data file is larger than the requested map: its size is used */
	snprintf(path, sizeof(path), "%s/data.mdb", f->dir);
	assert_int_equal(stat(path, &fst), 0);
	assert_true((uint64_t)fst.st_size > 1 * MiB);
	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 2 * MiB, &s), 0);
	assert_true(wj_store_map_size(s) >= (uint64_t)fst.st_size);
	check_values(s, 0, 20 * 256, 4000);
	wj_store_close(s);
}

static void test_growth_limit(void **state)
{
	fixture_t *f = *state;
	wj_store_t *s = NULL;
	int ret = 0;
	uint64_t ok = 0;

	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 2 * MiB, &s), 0);
	for (uint64_t c = 0; c < 200; c++) {
		chunk_t ch = {.first = c * 16, .n = 16, .len = 4000};
		ret = wj_store_write(s, write_chunk, &ch);
		if (ret != 0)
			break;
		ok++;
	}
	assert_int_equal(ret, -ENOSPC);
	assert_non_null(strstr(wj_store_strerror(), "map_max"));
	assert_true(ok >= 8);
	assert_true(wj_store_map_size(s) == 2 * MiB);
	assert_int_equal(wj_store_grow(s), -ENOSPC);

	/* earlier data intact, the failed chunk left nothing */
	wj_txn_t t;
	size_t n = 0;
	assert_int_equal(wj_txn_begin(s, &t, false), 0);
	assert_int_equal(wj_txn_count(&t, WJ_DB_DOCS, &n), 0);
	assert_int_equal(wj_txn_commit(&t), 0);
	assert_int_equal(n, ok * 16);
	check_values(s, 0, ok * 16, 4000);

	/* still usable: free some room, then a write fits again */
	chunk_t del = {.first = 0, .n = 64};
	assert_int_equal(wj_store_write(s, delete_chunk, &del), 0);
	chunk_t small = {.first = 100000, .n = 4, .len = 4000};
	assert_int_equal(wj_store_write(s, write_chunk, &small), 0);
	check_values(s, 100000, 4, 4000);
	check_values(s, 64, ok * 16 - 64, 4000);
	wj_store_close(s);
}

/* Reader process: consistent snapshots while the parent writes; exit code says what failed. */
static void reader_child(const char *dir, int ready_fd, int done_fd, uint64_t total)
{
	wj_store_t *s;
	if (wj_store_open(dir, 1 * MiB, 64 * MiB, &s) != 0)
		_exit(30);
	uint64_t map0 = wj_store_map_size(s);
	if (write_byte(ready_fd) != 0)
		_exit(29);
	unsigned distinct = 0;
	uint64_t last = UINT64_MAX;
	time_t until = time(NULL) + 60;
	bool done = false;
	while (time(NULL) < until) {
		struct pollfd p = {.fd = done_fd, .events = POLLIN};
		if (!done && poll(&p, 1, 0) == 1)
			done = true; /* one more full snapshot after the writer finished */
		wj_txn_t t;
		int r = wj_txn_begin(s, &t, false);
		if (r != 0)
			_exit(31);
		uint64_t count = 0;
		r = get_u64(&t, WJ_DB_META, 0, &count);
		if (r != 0 && r != -ENOENT)
			_exit(32);
		size_t n = 0;
		if (wj_txn_count(&t, WJ_DB_DOCS, &n) != 0 || n != count)
			_exit(33);
		wj_iter_t it;
		uint64_t k = 0;
		if (wj_iter_open(&t, WJ_DB_DOCS, &it) != 0)
			_exit(34);
		for (r = wj_iter_seek(&it, NULL, 0); r == 0; r = wj_iter_next(&it), k++) {
			wj_val_t key = wj_iter_key(&it), val = wj_iter_val(&it);
			const uint8_t *b = val.data;
			if (key.len != 8 || wj_u64be_get(key.data) != k || val.len != 8192 ||
			    b[0] != (uint8_t)k || b[8191] != (uint8_t)(k * 7))
				_exit(35);
		}
		wj_iter_close(&it);
		if (r != -ENOENT || k != count)
			_exit(36);
		if (wj_txn_commit(&t) != 0)
			_exit(37);
		if (count != last)
			distinct++;
		last = count;
		if (done)
			break;
	}
	if (!done || last != total)
		_exit(38);
	if (wj_store_map_size(s) <= map0) /* adopted the map the writer grew */
		_exit(39);
	if (distinct < 2)
		_exit(40);
	wj_store_close(s);
	_exit(0);
}

typedef struct bigput {
	uint64_t i;
} bigput_t;

static int write_big(wj_txn_t *t, void *arg)
{
	bigput_t *b = arg;
	uint8_t kb[8], val[8192];
	memset(val, 0, sizeof(val));
	val[0] = (uint8_t)b->i;
	val[8191] = (uint8_t)(b->i * 7);
	wj_key_u64be(kb, b->i);
	wj_txn_put(t, WJ_DB_DOCS, kb, 8, val, sizeof(val));
	put_u64(t, WJ_DB_META, 0, b->i + 1);
	return 0;
}

static void test_two_processes(void **state)
{
	fixture_t *f = *state;
	wj_store_t *s = NULL;
	const uint64_t total = 600; /* ~5 MiB of values: the map grows from 1 MiB */

	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 64 * MiB, &s), 0);
	wj_store_close(s);

	int ready[2], done[2];
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(done), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(ready[0]);
		close(done[1]);
		reader_child(f->dir, ready[1], done[0], total);
	}
	close(ready[1]);
	close(done[0]);
	assert_int_equal(read_byte(ready[0], 20000), 0);
	assert_int_equal(wj_store_open(f->dir, 1 * MiB, 64 * MiB, &s), 0);
	for (uint64_t i = 0; i < total; i++) {
		bigput_t b = {.i = i};
		assert_int_equal(wj_store_write(s, write_big, &b), 0);
	}
	assert_true(wj_store_map_size(s) > 1 * MiB);
	(void)write_byte(done[1]); /* fails only if the reader already died: its status says why */
	int status = wait_child(pid, 60000);
	close(ready[0]);
	close(done[1]);
	assert_true(status != -1);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	wj_store_close(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_u64be),
		cmocka_unit_test_setup_teardown(test_open_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_upgrade_v1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persist_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_first_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_uncommitted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_random_kill, setup, teardown),
		cmocka_unit_test_setup_teardown(test_growth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_growth_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_processes, setup, teardown),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
