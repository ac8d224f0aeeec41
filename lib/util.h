/* Small shared helpers: time in a fixed UTC offset, monotonic clock, growable buffer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WJ_TIME_LEN 20 /* "YYYY-MM-DD HH:MM:SS" + NUL */

/* Wall-clock now in epoch seconds / milliseconds. */
int64_t wj_now(void);
int64_t wj_now_ms(void);
/* Monotonic milliseconds (for timeouts and rate limiting). */
uint64_t wj_mono_ms(void);

/* Format epoch seconds as "YYYY-MM-DD HH:MM:SS" in the given UTC offset (seconds east),
 * independent of the host TZ. buf must hold WJ_TIME_LEN bytes. */
void wj_time_format(int64_t epoch, int tz_offset, char buf[WJ_TIME_LEN]);
/* Parse "YYYY-MM-DD HH:MM:SS" (or "YYYY-MM-DD") read in the given offset.
 * Returns 0 and sets *epoch, or -EINVAL. */
int wj_time_parse(const char *s, int tz_offset, int64_t *epoch);
/* Parse a UTC offset "+08:00", "-05:30", "Z" or "UTC" to seconds east. 0 or -EINVAL. */
int wj_tz_parse(const char *s, int *offset);

/* Durations "500ms", "30s", "5m", "1h", "1d" → milliseconds. 0 or -EINVAL. */
int wj_duration_parse(const char *s, uint64_t *ms);
/* Sizes "4096", "64KiB", "512MiB", "4GiB" → bytes. 0 or -EINVAL. */
int wj_size_parse(const char *s, uint64_t *bytes);

/* Growable byte buffer, always NUL-terminated when data != NULL. */
typedef struct wj_buf {
	char *data;
	size_t len;
	size_t cap;
} wj_buf_t;

int wj_buf_append(wj_buf_t *b, const void *p, size_t n);
int wj_buf_printf(wj_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void wj_buf_reset(wj_buf_t *b);
void wj_buf_free(wj_buf_t *b);

/* The valid UTF-8 sequence at s (n > 0 bytes available): its length, the code point in *cp;
 * 0 when the bytes are not valid UTF-8 (overlong forms and surrogates included). */
size_t wj_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Code points a terminal acts on or that reorder what is shown: C0, DEL, C1, the Unicode line
 * and paragraph separators, bidirectional marks, embeddings, overrides and isolates. */
bool wj_cp_unprintable(uint32_t c);

/* A copy of the n bytes at text fit to be shown on an operator's terminal, for text that came
 * from a remote service or from the state: terminal escape sequences (ESC or C1 CSI with its
 * parameters, OSC/DCS/APC/PM/SOS strings up to their terminator, other escapes) and every other
 * control character (C0, DEL, C1, bidirectional marks and overrides) removed; tabs and line
 * breaks become spaces, bytes that are not UTF-8 become '?'. Never longer than the input.
 * Caller frees; NULL when out of memory. */
char *wj_text_printable(const char *text, size_t n);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void wj_hex(const unsigned char *in, size_t n, char *out, bool upper);

/* Write a whole file atomically with exactly the given mode: the data goes to a new temporary
 * file beside path (a unique name "PATH.PID.N.tmp", created exclusively, never through a
 * symbolic link), is flushed to disk and renamed over path; then the directory is flushed, so
 * that the new file survives a crash. Readers see the old file or the new one, never a part.
 * 0 or -errno (the temporary file is removed on failure). */
int wj_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
