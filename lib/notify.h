/* Service manager notifications (sd_notify protocol). Every call is a no-op returning 0 when
 * $NOTIFY_SOCKET is not set, so the daemon behaves the same outside systemd. */
#pragma once

#include <stdint.h>

/* Send one notification ("READY=1", or several "K=V" lines). 0 or -errno. */
int wj_notify(const char *msg);
int wj_notify_ready(void);
/* "RELOADING=1" with MONOTONIC_USEC= (for Type=notify-reload). */
int wj_notify_reloading(void);
int wj_notify_stopping(void);
/* "STATUS=..." (newlines in the text become spaces). */
int wj_notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int wj_notify_watchdog(void);
/* The watchdog interval the service manager expects (µs), 0 when the watchdog is off or
 * meant for another process ($WATCHDOG_PID). */
uint64_t wj_notify_watchdog_usec(void);

/* Send msg as one datagram to a notify socket address: a path, or '@' for the abstract
 * namespace. This is what wj_notify does when built without libsystemd. 0 or -errno. */
int wj_notify_send(const char *socket_addr, const char *msg);
