/* Unit tests for lib/notify: messages arrive on a bound $NOTIFY_SOCKET (path and abstract),
 * nothing is sent without it, watchdog interval from the environment. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "lib/notify.h"

static char dir[256];
static char sock_path[300];

/* Bind a datagram socket at addr ('@' = abstract). Returns the fd. */
static int bind_at(const char *addr)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(addr);
	assert_true(n < sizeof(sa.sun_path));
	memcpy(sa.sun_path, addr, n);
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	if (addr[0] == '@')
		sa.sun_path[0] = '\0';
	else
		len++;
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
	return fd;
}

/* Next datagram within 2 s, NUL-terminated into buf; "" on timeout. */
static void recv_msg(int fd, char *buf, size_t size)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	buf[0] = '\0';
	if (poll(&p, 1, 2000) != 1)
		return;
	ssize_t n = recv(fd, buf, size - 1, 0);
	assert_true(n >= 0);
	buf[n] = '\0';
}

static bool nothing_pending(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 50) == 0;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "%s/wj-notify-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/notify.sock", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	unlink(sock_path);
	rmdir(dir);
	return 0;
}

static void check_all(int fd)
{
	char buf[1024];
	assert_int_equal(wj_notify_ready(), 0);
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "READY=1");

	assert_int_equal(wj_notify_reloading(), 0);
	recv_msg(fd, buf, sizeof(buf));
	unsigned long long usec = 0;
	int off = 0;
	assert_int_equal(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu%n", &usec, &off), 1);
	assert_int_equal(buf[off], '\0');
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned long long now = (unsigned long long)ts.tv_sec * 1000000 + (unsigned long long)ts.tv_nsec / 1000;
	assert_true(usec > 0 && usec <= now && now - usec < 5000000);

	assert_int_equal(wj_notify_stopping(), 0);
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STOPPING=1");

	assert_int_equal(wj_notify_status("polling %d flows, queue %s", 2, "12"), 0);
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STATUS=polling 2 flows, queue 12");

	assert_int_equal(wj_notify_status("line\nbreak"), 0);
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STATUS=line break");

	assert_int_equal(wj_notify_watchdog(), 0);
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "WATCHDOG=1");

	assert_int_equal(wj_notify("STATUS=a\nERRNO=5"), 0);
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "STATUS=a\nERRNO=5");
	assert_true(nothing_pending(fd));
}

static void test_path_socket(void **state)
{
	(void)state;
	int fd = bind_at(sock_path);
	assert_int_equal(setenv("NOTIFY_SOCKET", sock_path, 1), 0);
	check_all(fd);
	close(fd);
}

static void test_abstract_socket(void **state)
{
	(void)state;
	char name[64];
	snprintf(name, sizeof(name), "@wj-notify-test-%ld", (long)getpid());
	int fd = bind_at(name);
	assert_int_equal(setenv("NOTIFY_SOCKET", name, 1), 0);
	check_all(fd);
	close(fd);
}

static void test_unset(void **state)
{
	(void)state;
	int fd = bind_at(sock_path);
	unsetenv("NOTIFY_SOCKET");
	assert_int_equal(wj_notify_ready(), 0);
	assert_int_equal(wj_notify_status("x"), 0);
	assert_true(nothing_pending(fd));
	close(fd);
	/* set but nobody listening: an error, not a crash */
	unlink(sock_path);
	assert_int_equal(setenv("NOTIFY_SOCKET", sock_path, 1), 0);
	assert_true(wj_notify_ready() < 0);
}

static void test_send_fallback(void **state)
{
	(void)state;
	char buf[256];
	int fd = bind_at(sock_path);
	assert_int_equal(wj_notify_send(sock_path, "READY=1"), 0);
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "READY=1");
	close(fd);

	char name[64];
	snprintf(name, sizeof(name), "@wj-notify-fb-%ld", (long)getpid());
	fd = bind_at(name);
	assert_int_equal(wj_notify_send(name, "WATCHDOG=1"), 0);
	recv_msg(fd, buf, sizeof(buf));
	assert_string_equal(buf, "WATCHDOG=1");
	close(fd);

	assert_int_equal(wj_notify_send(NULL, "READY=1"), 0);
	assert_int_equal(wj_notify_send("", "READY=1"), 0);
	assert_int_equal(wj_notify_send("relative/path", "READY=1"), -EAFNOSUPPORT);
	char longp[200];
	memset(longp, 'x', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(wj_notify_send(longp, "READY=1"), -EINVAL);
	unlink(sock_path);
	assert_int_equal(wj_notify_send(sock_path, "READY=1"), -ENOENT);
}

static void test_watchdog_usec(void **state)
{
	(void)state;
	char pid[32];
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	assert_int_equal(wj_notify_watchdog_usec(), 0);
	assert_int_equal(setenv("WATCHDOG_USEC", "30000000", 1), 0);
	assert_int_equal(wj_notify_watchdog_usec(), 30000000);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
	assert_int_equal(wj_notify_watchdog_usec(), 30000000);
	snprintf(pid, sizeof(pid), "%ld", (long)getpid() + 1);
	assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
	assert_int_equal(wj_notify_watchdog_usec(), 0);
	unsetenv("WATCHDOG_PID");
	assert_int_equal(setenv("WATCHDOG_USEC", "soon", 1), 0);
	assert_int_equal(wj_notify_watchdog_usec(), 0);
	assert_int_equal(setenv("WATCHDOG_USEC", "0", 1), 0);
	assert_int_equal(wj_notify_watchdog_usec(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_path_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abstract_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_send_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watchdog_usec, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
