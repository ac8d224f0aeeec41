/* Unit tests for lib/util: time formatting in a fixed offset, durations, sizes, buffers. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/util.h"

static void test_time_roundtrip(void **state)
{
	(void)state;
	char buf[WJ_TIME_LEN];
	int64_t t;
	/* 2024-01-01 12:00:00 Beijing = 2024-01-01 04:00:00 UTC = 1704081600 */
	assert_int_equal(wj_time_parse("2024-01-01 12:00:00", 8 * 3600, &t), 0);
	assert_int_equal(t, 1704081600);
	wj_time_format(t, 8 * 3600, buf);
	assert_string_equal(buf, "2024-01-01 12:00:00");
	wj_time_format(t, 0, buf);
	assert_string_equal(buf, "2024-01-01 04:00:00");
	wj_time_format(t, -5 * 3600, buf);
	assert_string_equal(buf, "2023-12-31 23:00:00");
	assert_int_equal(wj_time_parse("2024-02-29", 0, &t), 0);
	wj_time_format(t, 0, buf);
	assert_string_equal(buf, "2024-02-29 00:00:00");
	assert_int_equal(wj_time_parse("2023-02-29", 0, &t), -EINVAL);
	assert_int_equal(wj_time_parse("2023-13-01 00:00:00", 0, &t), -EINVAL);
	assert_int_equal(wj_time_parse("2023-01-01T00:00:00", 0, &t), -EINVAL);
	assert_int_equal(wj_time_parse("2023-01-01 24:00:00", 0, &t), -EINVAL);
	/* every day for 30 years round-trips */
	int64_t base;
	assert_int_equal(wj_time_parse("2000-01-01 00:00:00", 8 * 3600, &base), 0);
	for (int64_t d = 0; d < 365 * 30; d++) {
		int64_t e = base + d * 86400 + 3723, back;
		wj_time_format(e, 8 * 3600, buf);
		assert_int_equal(wj_time_parse(buf, 8 * 3600, &back), 0);
		assert_int_equal(back, e);
	}
}

static void test_tz(void **state)
{
	(void)state;
	int off;
	assert_int_equal(wj_tz_parse("+08:00", &off), 0);
	assert_int_equal(off, 28800);
	assert_int_equal(wj_tz_parse("-05:30", &off), 0);
	assert_int_equal(off, -19800);
	assert_int_equal(wj_tz_parse("Z", &off), 0);
	assert_int_equal(off, 0);
	assert_int_equal(wj_tz_parse("Asia/Shanghai", &off), -EINVAL);
	assert_int_equal(wj_tz_parse("+8", &off), -EINVAL);
}

static void test_duration(void **state)
{
	(void)state;
	uint64_t ms;
	assert_int_equal(wj_duration_parse("500ms", &ms), 0);
	assert_int_equal(ms, 500);
	assert_int_equal(wj_duration_parse("30s", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(wj_duration_parse("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(wj_duration_parse("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(wj_duration_parse("1d", &ms), 0);
	assert_int_equal(ms, 86400000);
	const char *bad[] = {"", "s", "30", "30 s", "-1s", "1.5s", "1w", "99999999999999999999s"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(wj_duration_parse(bad[i], &ms), -EINVAL);
}

static void test_size(void **state)
{
	(void)state;
	uint64_t b;
	assert_int_equal(wj_size_parse("4096", &b), 0);
	assert_int_equal(b, 4096);
	assert_int_equal(wj_size_parse("64MiB", &b), 0);
	assert_int_equal(b, 64ULL << 20);
	assert_int_equal(wj_size_parse("4GiB", &b), 0);
	assert_int_equal(b, 4ULL << 30);
	assert_int_equal(wj_size_parse("4GB", &b), -EINVAL);
	assert_int_equal(wj_size_parse("MiB", &b), -EINVAL);
}

static void test_buf(void **state)
{
	(void)state;
	wj_buf_t b = {0};
	for (int i = 0; i < 1000; i++)
		assert_int_equal(wj_buf_printf(&b, "%d,", i), 0);
	assert_int_equal(strncmp(b.data, "0,1,2,", 6), 0);
	assert_int_equal(b.data[b.len], '\0');
	assert_int_equal(strlen(b.data), b.len);
	wj_buf_reset(&b);
	assert_int_equal(b.len, 0);
	assert_int_equal(wj_buf_append(&b, "abc", 3), 0);
	assert_string_equal(b.data, "abc");
	wj_buf_free(&b);
	char hex[9];
	wj_hex((const unsigned char *)"\x01\xab\xff\x10", 4, hex, false);
	assert_string_equal(hex, "01abff10");
	wj_hex((const unsigned char *)"\x01\xab\xff\x10", 4, hex, true);
	assert_string_equal(hex, "01ABFF10");
}

static void read_text(const char *path, char *out, size_t size)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t n = read(fd, out, size - 1);
	assert_true(n >= 0);
	out[n] = '\0';
	close(fd);
}

/* Entries of dir other than "." and "..". */
static int count_entries(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", dir);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	int n = -1;
	assert_int_equal(fscanf(f, "%d", &n), 1);
	pclose(f);
	return n;
}

static void test_atomic_write(void **state)
{
	(void)state;
	char dir[] = "/tmp/wj-util-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], got[64];
	snprintf(path, sizeof(path), "%s/status.json", dir);
	assert_int_equal(wj_write_file_atomic(path, "{\"a\":1}\n", 8, 0644), 0);
	assert_int_equal(wj_write_file_atomic(path, "{}\n", 3, 0644), 0);
	read_text(path, got, sizeof(got));
	assert_string_equal(got, "{}\n");
	assert_int_equal(count_entries(dir), 1); /* no temporary file left behind */

	/* exactly the mode asked for, whatever the umask */
	mode_t old = umask(077);
	assert_int_equal(wj_write_file_atomic(path, "x", 1, 0640), 0);
	umask(old);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);

	/* a missing directory is an error, not a crash */
	char bad[300];
	snprintf(bad, sizeof(bad), "%s/no/such/file", dir);
	assert_int_equal(wj_write_file_atomic(bad, "x", 1, 0640), -ENOENT);
	unlink(path);
	rmdir(dir);
}

/* Symbolic links planted where the temporary file goes (the old fixed name PATH.tmp and the
 * next names this process would use) are never followed: the file they point to is left alone
 * and the write still succeeds. */
static void test_atomic_write_symlink(void **state)
{
	(void)state;
	char dir[] = "/tmp/wj-util-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], victim[256], link[320], got[64];
	snprintf(path, sizeof(path), "%s/status.json", dir);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	int fd = open(victim, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);

	enum { PLANTED = 64 };
	snprintf(link, sizeof(link), "%s.tmp", path);
	assert_int_equal(symlink(victim, link), 0);
	for (unsigned i = 0; i < PLANTED; i++) {
		snprintf(link, sizeof(link), "%s.%ld.%u.tmp", path, (long)getpid(), i);
		assert_int_equal(symlink(victim, link), 0);
	}
	/* and a dangling one, which O_CREAT alone would create a file through */
	char dangling_target[300];
	snprintf(dangling_target, sizeof(dangling_target), "%s/created-through-link", dir);
	for (unsigned i = PLANTED; i < PLANTED + 8; i++) {
		snprintf(link, sizeof(link), "%s.%ld.%u.tmp", path, (long)getpid(), i);
		assert_int_equal(symlink(dangling_target, link), 0);
	}

	for (int round = 0; round < 3; round++)
		assert_int_equal(wj_write_file_atomic(path, "new\n", 4, 0640), 0);
	read_text(path, got, sizeof(got));
	assert_string_equal(got, "new\n");
	read_text(victim, got, sizeof(got));
	assert_string_equal(got, "keep");
	assert_int_equal(access(dangling_target, F_OK), -1);
	struct stat st;
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	/* path, victim, PATH.tmp and the planted links: nothing else */
	assert_int_equal(count_entries(dir), 3 + PLANTED + 8);

	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

static void expect_printable(const char *in, size_t n, const char *want)
{
	char *got = wj_text_printable(in, n);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_true(strlen(got) <= n);
	free(got);
}

#define PRINTABLE(in, want) expect_printable(in, sizeof(in) - 1, want)

/* Remote text shown to an operator: nothing in it may drive the terminal. */
static void test_printable(void **state)
{
	(void)state;
	PRINTABLE("plain text 仓库不存在: WH09", "plain text 仓库不存在: WH09");
	PRINTABLE("", "");
	/* colours, cursor movement, screen clearing, title setting, hyperlinks */
	PRINTABLE("\x1b[31mRED\x1b[0m ok", "RED ok");
	PRINTABLE("a\x1b[2J\x1b[1;1Hb", "ab");
	PRINTABLE("\x1b]0;owned\x07title", "title");
	PRINTABLE("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link");
	PRINTABLE("x\x1b" "cy", "xy");       /* RIS */
	PRINTABLE("x\x1b(0y", "xy");          /* charset with an intermediate byte */
	PRINTABLE("x\x1bPq#0;2;0;0;0\x1b\\y", "xy"); /* DCS (sixel) */
	PRINTABLE("x\x1b", "x");              /* a lone ESC at the end */
	PRINTABLE("x\x1b[", "x");
	PRINTABLE("x\x1b]unterminated", "x"); /* a string never ended hides the rest */
	/* C1 controls in UTF-8: CSI, OSC, NEL */
	PRINTABLE("a\xc2\x9b" "31mb", "ab");
	PRINTABLE("a\xc2\x9d" "0;t\x07" "b", "ab");
	PRINTABLE("a\xc2\x85" "b", "ab");
	/* C0, DEL, line breaks, tabs */
	PRINTABLE("a\x07\x08\x7f" "b", "ab");
	PRINTABLE("line1\nline2\r\n\tx", "line1 line2   x");
	PRINTABLE("a\xe2\x80\xa8" "b", "a b"); /* U+2028 */
	/* bidirectional overrides and isolates reorder what is shown */
	PRINTABLE("RK1\xe2\x80\xae" "0001", "RK10001");
	PRINTABLE("a\xe2\x81\xa6" "b\xe2\x81\xa9", "ab");
	/* not UTF-8: raw C1 bytes, overlong forms, surrogates, a cut sequence */
	PRINTABLE("a\x9b" "31mb", "a?31mb");
	PRINTABLE("a\xc0\xafz", "a??z");
	PRINTABLE("a\xed\xa0\x80z", "a???z");
	PRINTABLE("a\xe4\xbb", "a??");
	/* a NUL inside the bytes is a control like the others */
	PRINTABLE("a\0b", "ab");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_roundtrip), cmocka_unit_test(test_tz),
		cmocka_unit_test(test_duration),       cmocka_unit_test(test_size),
		cmocka_unit_test(test_buf),            cmocka_unit_test(test_atomic_write),
		cmocka_unit_test(test_atomic_write_symlink), cmocka_unit_test(test_printable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
