/* Unit tests for lib/log: logfmt format, ts offset, quoting, secret masking, reopen after
 * rotation, level filtering, whole lines from concurrent processes, syslog priorities when
 * stderr is the journal. */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <jansson.h>

#include "lib/log.h"
#include "lib/util.h"

static char dir[256];
static char path[300];

static int64_t fixed_ms;
static int64_t fixed_clock(void)
{
	return fixed_ms;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "%s/wj-log-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(path, sizeof(path), "%s/test.log", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char p[400];
	wj_log_close();
	wj_log_set_clock(NULL);
	const char *names[] = {"test.log", "test.log.1", "other.log", "stderr.log"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
	return 0;
}

/* Whole file as a string; caller frees. */
static char *slurp(const char *p)
{
	FILE *f = fopen(p, "rb");
	if (!f)
		return NULL;
	wj_buf_t b = {0};
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		assert_int_equal(wj_buf_append(&b, chunk, n), 0);
	fclose(f);
	if (!b.data)
		return strdup("");
	return b.data;
}

/* Start an empty log file at level debug. */
static void fresh(void)
{
	unlink(path);
	assert_int_equal(wj_log_open(path, WJ_LOG_DEBUG, 8 * 3600), 0);
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void assert_matches(const char *line, const char *re)
{
	regex_t rx;
	assert_int_equal(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
	int r = regexec(&rx, line, 0, NULL, 0);
	regfree(&rx);
	if (r != 0)
		fail_msg("line %s does not match %s", line, re);
}

static void test_format(void **state)
{
	(void)state;
	fresh();
	wj_log(WJ_LOG_INFO, "wdt", "flow=pd-gain stockin_no=RK001", "bill saved");
	wj_warn("jdy", NULL, "slow");
	wj_error("", "k=v", "x");
	wj_debug("store", NULL, "map grown to %d MiB", 128);
	char *s = slurp(path);
	assert_non_null(s);
	assert_int_equal(count_lines(s), 4);
	const char *ts = "^ts=[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}\\+08:00 ";
	char re[512];
	char *save = NULL;
	char *line = strtok_r(s, "\n", &save);
	snprintf(re, sizeof(re), "%slevel=info mod=wdt flow=pd-gain stockin_no=RK001 msg=\"bill saved\"$", ts);
	assert_matches(line, re);
	line = strtok_r(NULL, "\n", &save);
	snprintf(re, sizeof(re), "%slevel=warn mod=jdy msg=slow$", ts);
	assert_matches(line, re);
	line = strtok_r(NULL, "\n", &save);
	snprintf(re, sizeof(re), "%slevel=error k=v msg=x$", ts);
	assert_matches(line, re);
	line = strtok_r(NULL, "\n", &save);
	snprintf(re, sizeof(re), "%slevel=debug mod=store msg=\"map grown to 128 MiB\"$", ts);
	assert_matches(line, re);
	free(s);
}

static void test_ts_offset(void **state)
{
	(void)state;
	int64_t epoch;
	/* 2026-11-29 04:00:00 UTC */
	assert_int_equal(wj_time_parse("2026-11-29 04:00:00", 0, &epoch), 0);
	fixed_ms = epoch * 1000 + 123;
	wj_log_set_clock(fixed_clock);

	unlink(path);
	assert_int_equal(wj_log_open(path, WJ_LOG_INFO, 8 * 3600), 0);
	wj_info("t", NULL, "a");
	assert_int_equal(wj_log_open(path, WJ_LOG_INFO, -5 * 3600), 0);
	wj_info("t", NULL, "b");
	assert_int_equal(wj_log_open(path, WJ_LOG_INFO, 0), 0);
	fixed_ms = epoch * 1000 + 7;
	wj_info("t", NULL, "c");
	assert_int_equal(wj_log_open(path, WJ_LOG_INFO, 5 * 3600 + 1800), 0);
	fixed_ms = epoch * 1000 - 1; /* one ms before: previous second, .999 */
	wj_info("t", NULL, "d");
	char *s = slurp(path);
	assert_string_equal(s,
		"ts=2026-11-29T12:00:00.123+08:00 level=info mod=t msg=a\n"
		"ts=2026-11-28T23:00:00.123-05:00 level=info mod=t msg=b\n"
		"ts=2026-11-29T04:00:00.007+00:00 level=info mod=t msg=c\n"
		"ts=2026-11-29T09:29:59.999+05:30 level=info mod=t msg=d\n");
	free(s);
}

static void test_quoting(void **state)
{
	(void)state;
	int64_t epoch;
	assert_int_equal(wj_time_parse("2026-01-02 03:04:05", 8 * 3600, &epoch), 0);
	fixed_ms = epoch * 1000;
	wj_log_set_clock(fixed_clock);
	fresh();
	wj_info("m", NULL, "%s", "");
	wj_info("m", NULL, "a=b");
	wj_info("m", NULL, "say \"hi\"");
	wj_info("m", NULL, "back\\slash");
	wj_info("m", NULL, "two\nlines\r\tand\x01" "bell");
	wj_info("m", NULL, "盘盈单已保存");
	wj_info("m", NULL, "bad\xff\xfe utf8 \xe4\xb8");
	wj_info("m", NULL, "RK1\xe2\x80\xae" "0001 \xc2\x9b" "2J"); /* bidi override, C1 CSI */
	char *s = slurp(path);
	const char *p = "ts=2026-01-02T03:04:05.000+08:00 level=info mod=m msg=";
	char want[2048];
	snprintf(want, sizeof(want),
		 "%s\"\"\n"
		 "%s\"a=b\"\n"
		 "%s\"say \\\"hi\\\"\"\n"
		 "%s\"back\\\\slash\"\n"
		 "%s\"two\\nlines\\r\\tand\\x01bell\"\n"
		 "%s盘盈单已保存\n"
		 "%s\"bad\\xff\\xfe utf8 \\xe4\\xb8\"\n"
		 "%s\"RK1\\xe2\\x80\\xae0001 \\xc2\\x9b2J\"\n",
		 p, p, p, p, p, p, p, p);
	assert_string_equal(s, want);
	free(s);

	/* wj_logfmt_kv */
	char buf[128] = "a=1";
	wj_logfmt_kv(buf, sizeof(buf), "plain", "x1");
	wj_logfmt_kv(buf, sizeof(buf), "sp", "x y");
	wj_logfmt_kv(buf, sizeof(buf), "empty", "");
	wj_logfmt_kv(buf, sizeof(buf), "null", NULL);
	wj_logfmt_kv(buf, sizeof(buf), "q", "\"\\\n");
	wj_logfmt_kv(buf, sizeof(buf), "bin", "\x80z\xc0\xaf");
	wj_logfmt_kv(buf, sizeof(buf), "zh", "仓库");
	assert_string_equal(buf, "a=1 plain=x1 sp=\"x y\" empty=\"\" null=\"\" q=\"\\\"\\\\\\n\""
				 " bin=\"\\x80z\\xc0\\xaf\" zh=仓库");
	/* too long: cut at an escape boundary, still a valid quoted value */
	char small[24] = "";
	wj_logfmt_kv(small, sizeof(small), "k", "abcdefghijklmnopqrstuvwxyz");
	assert_string_equal(small, " k=\"abcdefghijklmno...\"");
	assert_int_equal(strlen(small), sizeof(small) - 1);
	char small2[16] = "";
	wj_logfmt_kv(small2, sizeof(small2), "k", "\"\"\"\"\"\"");
	assert_string_equal(small2, " k=\"\\\"\\\"\\\"...\"");
	/* not even the key fits: unchanged */
	char tiny[6] = "x";
	wj_logfmt_kv(tiny, sizeof(tiny), "key", "v");
	assert_string_equal(tiny, "x");
	/* a kv line is written verbatim as fields */
	char fields[128] = "";
	wj_logfmt_kv(fields, sizeof(fields), "stockin_no", "RK 1");
	fresh();
	wj_info("m", fields + 1, "ok");
	s = slurp(path);
	assert_non_null(strstr(s, " mod=m stockin_no=\"RK 1\" msg=ok\n"));
	free(s);
	/* raw newlines in fields cannot split the line */
	fresh();
	wj_info("m", "a=1\nb=2", "ok");
	s = slurp(path);
	assert_int_equal(count_lines(s), 1);
	assert_non_null(strstr(s, " a=1\\x0ab=2 msg=ok\n"));
	free(s);
}

static void test_masking(void **state)
{
	(void)state;
	const char *secrets[] = {"s3cr3t/val+ue", "abc", "tokenXYZ", NULL};
	wj_log_set_secrets(secrets);
	wj_log_add_secret("runtime-token-1");
	wj_log_add_secret("q\"t\\secret");
	fresh();
	wj_info("m", NULL, "secret is s3cr3t/val+ue here");
	wj_info("m", "app_secret=s3cr3t/val+ue", "in fields");
	wj_info("m", "t=tokenXYZ", "twice tokenXYZtokenXYZ and s3cr3t/val+ue");
	wj_info("m", NULL, "url=https://x/?secret=s3cr3t%%2Fval%%2Bue&b=1");
	wj_info("m", NULL, "lower s3cr3t%%2fval%%2bue");
	wj_info("m", NULL, "rt runtime-token-1 abc");
	wj_info("m", NULL, "escaped q\"t\\secret end");
	char *s = slurp(path);
	assert_null(strstr(s, "s3cr3t"));
	assert_null(strstr(s, "tokenXYZ"));
	assert_null(strstr(s, "runtime-token"));
	assert_null(strstr(s, "q\\\"t\\\\secret"));
	assert_non_null(strstr(s, "msg=\"secret is *** here\"\n"));
	assert_non_null(strstr(s, " app_secret=*** msg=\"in fields\"\n"));
	assert_non_null(strstr(s, " t=*** msg=\"twice ****** and ***\"\n"));
	assert_non_null(strstr(s, "msg=\"url=https://x/?secret=***&b=1\"\n"));
	assert_non_null(strstr(s, "msg=\"lower ***\"\n"));
	/* "abc" is shorter than 4 bytes: not a secret */
	assert_non_null(strstr(s, "msg=\"rt *** abc\"\n"));
	assert_non_null(strstr(s, "msg=\"escaped *** end\"\n"));
	free(s);

	/* replacing the configured set keeps runtime secrets, drops old configured ones */
	const char *next[] = {"newsecret", NULL};
	wj_log_set_secrets(next);
	fresh();
	wj_info("m", NULL, "newsecret tokenXYZ runtime-token-1");
	s = slurp(path);
	assert_non_null(strstr(s, "msg=\"*** tokenXYZ ***\"\n"));
	free(s);
	/* only the most recent runtime secrets are kept */
	char tok[32];
	for (int i = 0; i < 100; i++) {
		snprintf(tok, sizeof(tok), "rotating-%03d", i);
		wj_log_add_secret(tok);
	}
	fresh();
	wj_info("m", NULL, "rotating-099 rotating-050 rotating-000");
	s = slurp(path);
	assert_non_null(strstr(s, "msg=\"*** *** rotating-000\"\n"));
	free(s);
	wj_log_set_secrets(NULL);
}

/* Text kept outside the log (status, stored errors) is masked the same way, in place. */
static void test_mask_text(void **state)
{
	(void)state;
	const char *secrets[] = {"s3cr3t/val+ue", "abc", NULL};
	wj_log_set_secrets(secrets);
	wj_log_add_secret("tok-4f9a8b7c6d5e");
	char a[] = "errcode 1030002006: invalid app-token tok-4f9a8b7c6d5e (secret s3cr3t%2Fval%2Bue)";
	assert_ptr_equal(wj_log_mask(a), a);
	assert_string_equal(a, "errcode 1030002006: invalid app-token *** (secret ***)");
	char b[] = "tok-4f9a8b7c6d5etok-4f9a8b7c6d5e abc";
	assert_string_equal(wj_log_mask(b), "****** abc");
	char c[] = "nothing here";
	assert_string_equal(wj_log_mask(c), "nothing here");
	char d[] = "";
	assert_string_equal(wj_log_mask(d), "");
	assert_null(wj_log_mask(NULL));

	json_t *o = json_pack("{s:s, s:[s, i, {s:s}], s:s}", "last_error",
			      "HTTP 500: token tok-4f9a8b7c6d5e expired", "flows",
			      "flow s3cr3t/val+ue", 3, "last_error", "still tok-4f9a8b7c6d5e", "name",
			      "pd-gain");
	assert_non_null(o);
	assert_int_equal(wj_log_mask_json(o), 0);
	char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(text, "{\"flows\":[\"flow ***\",3,{\"last_error\":\"still ***\"}],"
				  "\"last_error\":\"HTTP 500: token *** expired\",\"name\":\"pd-gain\"}");
	free(text);
	json_decref(o);
	wj_log_set_secrets(NULL);
	wj_log_close(); /* forgets the runtime secrets too */
	char e[] = "tok-4f9a8b7c6d5e";
	assert_string_equal(wj_log_mask(e), "tok-4f9a8b7c6d5e");
}

static void test_reopen(void **state)
{
	(void)state;
	char rotated[400];
	snprintf(rotated, sizeof(rotated), "%s/test.log.1", dir);
	fresh();
	wj_info("m", NULL, "before");
	assert_int_equal(rename(path, rotated), 0);
	wj_info("m", NULL, "after rename");
	assert_int_equal(wj_log_reopen(), 0);
	wj_info("m", NULL, "after reopen");
	char *old = slurp(rotated), *cur = slurp(path);
	assert_non_null(old);
	assert_non_null(cur);
	assert_non_null(strstr(old, "msg=before\n"));
	assert_non_null(strstr(old, "msg=\"after rename\"\n"));
	assert_null(strstr(old, "after reopen"));
	assert_int_equal(count_lines(cur), 1);
	assert_non_null(strstr(cur, "msg=\"after reopen\"\n"));
	free(old);
	free(cur);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0022, 0);

	/* a failed reopen (a directory now sits at the path) keeps the old fd */
	assert_int_equal(rename(path, rotated), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	int r = wj_log_reopen();
	assert_int_equal(rmdir(path), 0);
	assert_int_equal(r, -EISDIR);
	wj_info("m", NULL, "still here");
	old = slurp(rotated);
	assert_non_null(strstr(old, "msg=\"still here\"\n"));
	free(old);
	unlink(rotated);
	/* and the next reopen succeeds again */
	assert_int_equal(wj_log_reopen(), 0);
	wj_info("m", NULL, "new file");
	cur = slurp(path);
	assert_string_equal(strstr(cur, " msg="), " msg=\"new file\"\n");
	free(cur);
}

static void test_open_again(void **state)
{
	(void)state;
	char other[400], bad[400];
	snprintf(other, sizeof(other), "%s/other.log", dir);
	snprintf(bad, sizeof(bad), "%s/missing/dir.log", dir);
	fresh();
	wj_info("m", NULL, "one");
	/* a path that cannot be opened changes nothing */
	assert_int_equal(wj_log_open(bad, WJ_LOG_ERROR, 0), -ENOENT);
	assert_int_equal(wj_log_level(), WJ_LOG_DEBUG);
	wj_info("m", NULL, "two");
	assert_int_equal(wj_log_open(other, WJ_LOG_INFO, 0), 0);
	wj_info("m", NULL, "three");
	char *a = slurp(path), *b = slurp(other);
	assert_non_null(strstr(a, "msg=one\n"));
	assert_non_null(strstr(a, "msg=two\n"));
	assert_null(strstr(a, "three"));
	assert_int_equal(count_lines(b), 1);
	assert_non_null(strstr(b, "msg=three\n"));
	free(a);
	free(b);
	assert_int_equal(wj_log_open(path, 7, 0), -EINVAL);
}

static void test_levels(void **state)
{
	(void)state;
	assert_int_equal(wj_log_level_parse("debug"), WJ_LOG_DEBUG);
	assert_int_equal(wj_log_level_parse("info"), WJ_LOG_INFO);
	assert_int_equal(wj_log_level_parse("warn"), WJ_LOG_WARN);
	assert_int_equal(wj_log_level_parse("error"), WJ_LOG_ERROR);
	assert_int_equal(wj_log_level_parse("warning"), -1);
	assert_int_equal(wj_log_level_parse(""), -1);
	assert_int_equal(wj_log_level_parse(NULL), -1);

	unlink(path);
	assert_int_equal(wj_log_open(path, WJ_LOG_WARN, 0), 0);
	assert_int_equal(wj_log_level(), WJ_LOG_WARN);
	wj_debug("m", NULL, "d1");
	wj_info("m", NULL, "i1");
	wj_warn("m", NULL, "w1");
	wj_error("m", NULL, "e1");
	wj_log_set_level(WJ_LOG_DEBUG);
	wj_debug("m", NULL, "d2");
	wj_log_set_level(99); /* ignored */
	assert_int_equal(wj_log_level(), WJ_LOG_DEBUG);
	wj_log_set_level(WJ_LOG_ERROR);
	wj_warn("m", NULL, "w2");
	wj_error("m", NULL, "e2");
	char *s = slurp(path);
	assert_int_equal(count_lines(s), 4);
	assert_non_null(strstr(s, "level=warn mod=m msg=w1\n"));
	assert_non_null(strstr(s, "level=error mod=m msg=e1\n"));
	assert_non_null(strstr(s, "level=debug mod=m msg=d2\n"));
	assert_non_null(strstr(s, "level=error mod=m msg=e2\n"));
	free(s);
}

static void test_errno_kept(void **state)
{
	(void)state;
	fresh();
	errno = EPIPE;
	wj_info("m", NULL, "x");
	assert_int_equal(errno, EPIPE);
}

static void test_long_message(void **state)
{
	(void)state;
	fresh();
	size_t n = 200 * 1024;
	char *big = malloc(n + 1);
	assert_non_null(big);
	memset(big, 'a', n);
	big[n] = '\0';
	wj_info("m", NULL, "%s", big);
	free(big);
	char *s = slurp(path);
	assert_int_equal(count_lines(s), 1);
	size_t len = strlen(s);
	assert_true(len > 60 * 1024 && len < 70 * 1024);
	free(s);
}

#define PROCS 2
#define LINES 2000

/* Log to stderr, redirected to a file that $JOURNAL_STREAM names (journal true) or not; returns
 * what was written (caller frees). */
static char *log_to_stderr(bool journal, const char *file)
{
	char err_path[400];
	snprintf(err_path, sizeof(err_path), "%s/stderr.log", dir);
	unlink(err_path);
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	close(fd);
	struct stat st;
	assert_int_equal(fstat(STDERR_FILENO, &st), 0);
	char js[64];
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino + (journal ? 0 : 1));
	setenv("JOURNAL_STREAM", js, 1);
	assert_int_equal(wj_log_open(file, WJ_LOG_DEBUG, 8 * 3600), 0);
	wj_error("t", NULL, "e");
	wj_warn("t", NULL, "w");
	wj_info("t", NULL, "i");
	wj_debug("t", NULL, "d");
	wj_log_close();
	unsetenv("JOURNAL_STREAM");
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	char *text = slurp(file ? file : err_path);
	assert_non_null(text);
	return text;
}

static void test_journal(void **state)
{
	(void)state;
	wj_log_set_clock(fixed_clock);
	fixed_ms = 0;
	const char *want = "<3>ts=1970-01-01T08:00:00.000+08:00 level=error mod=t msg=e\n"
			   "<4>ts=1970-01-01T08:00:00.000+08:00 level=warn mod=t msg=w\n"
			   "<6>ts=1970-01-01T08:00:00.000+08:00 level=info mod=t msg=i\n"
			   "<7>ts=1970-01-01T08:00:00.000+08:00 level=debug mod=t msg=d\n";
	char *text = log_to_stderr(true, NULL);
	assert_string_equal(text, want);
	free(text);
	/* stderr is not the stream the journal was given: plain lines */
	text = log_to_stderr(false, NULL);
	assert_null(strstr(text, "<"));
	assert_non_null(strstr(text, "ts=1970-01-01T08:00:00.000+08:00 level=error mod=t msg=e\n"));
	free(text);
	/* a log file is never prefixed, even under the journal */
	unlink(path);
	text = log_to_stderr(true, path);
	assert_null(strstr(text, "<"));
	assert_non_null(strstr(text, "level=debug mod=t msg=d\n"));
	free(text);
}

static void test_concurrent(void **state)
{
	(void)state;
	fresh();
	pid_t pids[PROCS];
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			char body[3001];
			for (int i = 0; i < LINES; i++) {
				size_t len = 500 + (size_t)(i * 37 % 2500);
				memset(body, 'a' + p, len);
				body[len] = '\0';
				wj_info("proc", NULL, "p=%d i=%d %s", p, i, body);
			}
			_exit(0);
		}
	}
	for (int p = 0; p < PROCS; p++) {
		int st;
		assert_int_equal(waitpid(pids[p], &st, 0), pids[p]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	char *s = slurp(path);
	int seen[PROCS] = {0};
	size_t lines = 0;
	char *save = NULL;
	for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int p, i, off = 0;
		char *m = strstr(line, " msg=\"p=");
		assert_non_null(m);
		assert_int_equal(sscanf(m, " msg=\"p=%d i=%d %n", &p, &i, &off), 2);
		assert_true(p >= 0 && p < PROCS);
		assert_int_equal(i, seen[p]); /* each process's lines in order, none lost */
		seen[p]++;
		size_t len = 500 + (size_t)(i * 37 % 2500);
		const char *body = m + off;
		for (size_t k = 0; k < len; k++)
			assert_int_equal(body[k], 'a' + p);
		assert_string_equal(body + len, "\"");
		lines++;
	}
	assert_int_equal(lines, PROCS * LINES);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ts_offset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quoting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_masking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mask_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errno_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
