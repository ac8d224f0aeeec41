#include "lib/notify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifdef WJ_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

int wj_notify_send(const char *socket_addr, const char *msg)
{
	if (!socket_addr || !*socket_addr)
		return 0;
	if (socket_addr[0] != '/' && socket_addr[0] != '@')
		return -EAFNOSUPPORT;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t alen = strlen(socket_addr);
	if (alen >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, socket_addr, alen);
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + alen);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0';
	else
		salen++; /* include the NUL of a path */

	/* Non-blocking: a notify socket whose reader lags (its queue holds only a few datagrams)
	 * must never stall the event loop; a dropped STATUS= or WATCHDOG=1 is harmless. */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	size_t len = strlen(msg);
	ssize_t n = sendto(fd, msg, len, MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	int ret = n < 0 ? -errno : (size_t)n != len ? -EMSGSIZE : 0;
	close(fd);
	return ret;
}

int wj_notify(const char *msg)
{
	if (!msg)
		return -EINVAL;
	/* Our own sender rather than sd_notify(): sd_notify() blocks when the socket's queue is
	 * full, which would stop the whole daemon. */
	return wj_notify_send(getenv("NOTIFY_SOCKET"), msg);
}

int wj_notify_ready(void)
{
	return wj_notify("READY=1");
}

int wj_notify_reloading(void)
{
	struct timespec ts;
	char msg[64];
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t usec = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, usec);
	return wj_notify(msg);
}

int wj_notify_stopping(void)
{
	return wj_notify("STOPPING=1");
}

int wj_notify_status(const char *fmt, ...)
{
	char msg[512];
	memcpy(msg, "STATUS=", 7);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + 7, sizeof(msg) - 7, fmt, ap);
	va_end(ap);
	for (char *p = msg + 7; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	return wj_notify(msg);
}

int wj_notify_watchdog(void)
{
	return wj_notify("WATCHDOG=1");
}

uint64_t wj_notify_watchdog_usec(void)
{
#ifdef WJ_HAVE_LIBSYSTEMD
	uint64_t usec = 0;
	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
#else
	const char *s = getenv("WATCHDOG_USEC");
	if (!s || !*s)
		return 0;
	char *end;
	errno = 0;
	unsigned long long usec = strtoull(s, &end, 10);
	if (errno || *end || s[0] == '-' || usec == 0)
		return 0;
	const char *pid = getenv("WATCHDOG_PID");
	if (pid && *pid) {
		long long p = strtoll(pid, &end, 10);
		if (*end || p != (long long)getpid())
			return 0;
	}
	return usec;
#endif
}
