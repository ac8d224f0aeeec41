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

static void test_atomic_write(void **state)
{
	(void)state;
	char dir[] = "/tmp/wj-util-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[256], tmp[300];
	snprintf(path, sizeof(path), "%s/status.json", dir);
	assert_int_equal(wj_write_file_atomic(path, "{\"a\":1}\n", 8, 0644), 0);
	assert_int_equal(wj_write_file_atomic(path, "{}\n", 3, 0644), 0);
	char got[32] = {0};
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, got, sizeof(got) - 1), 3);
	close(fd);
	assert_string_equal(got, "{}\n");
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	assert_int_equal(access(tmp, F_OK), -1);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_roundtrip), cmocka_unit_test(test_tz),
		cmocka_unit_test(test_duration),       cmocka_unit_test(test_size),
		cmocka_unit_test(test_buf),            cmocka_unit_test(test_atomic_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
