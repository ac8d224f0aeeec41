/* logfmt logging: one line per event,
 *   ts=2026-11-29T12:00:00.123+08:00 level=info mod=wdt flow=pd-gain msg="bill saved" ms=12
 * to the configured file (reopened on SIGHUP) or stderr. Every registered secret is masked
 * ("***") wherever it appears in a line, keys and values alike. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { WJ_LOG_DEBUG = 0, WJ_LOG_INFO = 1, WJ_LOG_WARN = 2, WJ_LOG_ERROR = 3 };

/* Open the log (again, on reload: the new file is opened before the old one is closed).
 * path NULL or "" → stderr; when stderr is the journal ($JOURNAL_STREAM names its device and
 * inode, as systemd sets it), each line starts with its syslog priority ("<3>" error, "<4>"
 * warn, "<6>" info, "<7>" debug) for journalctl -p. tz_offset: seconds east of UTC for ts=. 0 or -errno; on failure
 * nothing changes (previous destination, level and offset stay in use); -EINVAL for a level
 * that is not WJ_LOG_*. */
int wj_log_open(const char *path, int level, int tz_offset);
/* The same for another process writing into the daemon's log (wdt2jdyctl's audit lines): the
 * file must exist already, so that it stays the daemon's (-ENOENT otherwise). */
int wj_log_attach(const char *path, int level, int tz_offset);
/* Reopen the same path (after rotation). 0 or -errno; on failure the old fd stays in use. */
int wj_log_reopen(void);
void wj_log_set_level(int level);
int wj_log_level(void);
/* Parse "debug|info|warn|error". Returns the level or -1. */
int wj_log_level_parse(const char *s);
void wj_log_close(void);

/* Replace the set of configured secrets (copied; NULL-terminated list, NULL clears). Values
 * shorter than 4 bytes are ignored. Each secret is also masked in its URL-encoded and its
 * logfmt-escaped form. Runtime secrets added below are kept. */
void wj_log_set_secrets(const char *const *secrets);
/* Add one runtime secret (tokens, fetched app secrets); copied. The 64 most recent are kept. */
void wj_log_add_secret(const char *secret);

/* Mask every registered secret (and its URL-encoded and logfmt-escaped forms) in the
 * NUL-terminated s, in place: each becomes "***", so the text never grows. For text kept
 * outside the log (status, stored errors). If the secrets could not all be registered (out of
 * memory), the whole text becomes "***". Returns s. */
char *wj_log_mask(char *s);
/* The same for every string value inside a JSON value (object keys are left alone).
 * 0, or -ENOMEM when a value could not be replaced (it is then "***" where possible). */
struct json_t;
int wj_log_mask_json(struct json_t *v);

/* fields: preformatted logfmt pairs "k=v k2=\"v 2\"" (may be NULL); msg is quoted as needed. */
void wj_log(int level, const char *mod, const char *fields, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void wj_logv(int level, const char *mod, const char *fields, const char *fmt, va_list ap);

/* Append ` key=value` to the NUL-terminated string in buf (quoting/escaping value as logfmt
 * needs; bytes that are not valid UTF-8 become \xNN). A pair that does not fit is cut at an
 * escape boundary and ends in `..."`; buf is left unchanged when not even that fits. Returns buf. */
char *wj_logfmt_kv(char *buf, size_t size, const char *key, const char *value);

/* Tests only: the wall clock used for ts= (epoch milliseconds); NULL restores the real one. */
void wj_log_set_clock(int64_t (*now_ms)(void));

#define wj_debug(mod, fields, ...) \
	do { if (wj_log_level() <= WJ_LOG_DEBUG) wj_log(WJ_LOG_DEBUG, mod, fields, __VA_ARGS__); } while (0)
#define wj_info(mod, fields, ...) wj_log(WJ_LOG_INFO, mod, fields, __VA_ARGS__)
#define wj_warn(mod, fields, ...) wj_log(WJ_LOG_WARN, mod, fields, __VA_ARGS__)
#define wj_error(mod, fields, ...) wj_log(WJ_LOG_ERROR, mod, fields, __VA_ARGS__)
