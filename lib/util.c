#include "lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TEMP_TRIES 1000 /* names tried for a temporary file */

int64_t wj_now(void)
{
	return (int64_t)time(NULL);
}

int64_t wj_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t wj_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Days from civil date, proleptic Gregorian (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
	z += 719468;
	const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	const unsigned doe = (unsigned)(z - era * 146097);
	const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	const unsigned mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

void wj_time_format(int64_t epoch, int tz_offset, char buf[WJ_TIME_LEN])
{
	int64_t t = epoch + tz_offset;
	int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
	int64_t secs = t - days * 86400;
	int y;
	unsigned m, d;
	civil_from_days(days, &y, &m, &d);
	unsigned v[6] = {(unsigned)(y < 0 ? 0 : y % 10000), m, d, (unsigned)(secs / 3600),
			 (unsigned)(secs / 60 % 60), (unsigned)(secs % 60)};
	static const char seps[] = "-- ::";
	char *p = buf;
	for (int i = 0; i < 6; i++) {
		if (i == 0) {
			*p++ = (char)('0' + v[0] / 1000);
			*p++ = (char)('0' + v[0] / 100 % 10);
		} else {
			*p++ = seps[i - 1];
		}
		*p++ = (char)('0' + v[i] / 10 % 10);
		*p++ = (char)('0' + v[i] % 10);
	}
	*p = '\0';
}

size_t wj_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c, min;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		len = 2, c = s[0] & 0x1f, min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3, c = s[0] & 0x0f, min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4, c = s[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

bool wj_cp_unprintable(uint32_t c)
{
	return c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0x200e || c == 0x200f ||
	       (c >= 0x2028 && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

/* Length of the terminal control sequence starting at s[0] (ESC, or a C1 introducer of code
 * point c taking l bytes): CSI with its parameters, the string controls (OSC, DCS, SOS, PM, APC)
 * up to their terminator (or the end), other escapes with their intermediate bytes. */
static size_t escape_len(const unsigned char *s, size_t n, uint32_t c, size_t l)
{
	size_t i = l;
	uint32_t kind = c; /* the C1 equivalent of ESC X is X + 0x40 */
	if (c == 0x1b) {
		if (i >= n)
			return i;
		if (s[i] >= 0x40 && s[i] <= 0x5f)
			kind = s[i++] + 0x40u;
		else
			kind = 0;
	}
	if (kind == 0x9b) { /* CSI: parameters, intermediates, final byte */
		while (i < n && s[i] >= 0x20 && s[i] <= 0x3f)
			i++;
		if (i < n && s[i] >= 0x40 && s[i] <= 0x7e)
			i++;
		return i;
	}
	if (kind == 0x90 || kind == 0x98 || kind == 0x9d || kind == 0x9e || kind == 0x9f) {
		for (; i < n; i++) { /* strings end with BEL, ST (ESC \) or C1 ST */
			if (s[i] == 0x07)
				return i + 1;
			if (s[i] == 0x1b && i + 1 < n && s[i + 1] == '\\')
				return i + 2;
			if (s[i] == 0xc2 && i + 1 < n && s[i + 1] == 0x9c)
				return i + 2;
		}
		return n;
	}
	if (c == 0x1b && kind == 0) { /* ESC, intermediates, one final byte */
		while (i < n && s[i] >= 0x20 && s[i] <= 0x2f)
			i++;
		if (i < n && s[i] >= 0x30 && s[i] <= 0x7e)
			i++;
	}
	return i;
}

char *wj_text_printable(const char *text, size_t n)
{
	const unsigned char *s = (const unsigned char *)text;
	char *out = malloc(n + 1);
	if (!out)
		return NULL;
	size_t w = 0;
	for (size_t i = 0; i < n;) {
		uint32_t c;
		size_t l = wj_utf8_decode(s + i, n - i, &c);
		if (l == 0) {
			out[w++] = '?';
			i++;
		} else if (c == 0x1b || (c >= 0x90 && c <= 0x9f)) {
			i += escape_len(s + i, n - i, c, l);
		} else if (c == '\t' || c == '\n' || c == '\r' || c == 0x2028 || c == 0x2029) {
			out[w++] = ' ';
			i += l;
		} else if (wj_cp_unprintable(c)) {
			i += l;
		} else {
			memcpy(out + w, s + i, l);
			w += l;
			i += l;
		}
	}
	out[w] = '\0';
	return out;
}

static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

int wj_time_parse(const char *s, int tz_offset, int64_t *epoch)
{
	int y, mo, d, h = 0, mi = 0, se = 0;
	if (!s)
		return -EINVAL;
	size_t len = strlen(s);
	if (len != 10 && len != 19)
		return -EINVAL;
	if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
	    !digits(s + 8, 2, &d))
		return -EINVAL;
	if (len == 19 && (s[10] != ' ' || !digits(s + 11, 2, &h) || s[13] != ':' ||
			  !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se)))
		return -EINVAL;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 59)
		return -EINVAL;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo == 2 && d == 29 && !leap)
		return -EINVAL;
	*epoch = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se -
		 tz_offset;
	return 0;
}

int wj_tz_parse(const char *s, int *offset)
{
	int h, m;
	if (!s)
		return -EINVAL;
	if (!strcmp(s, "Z") || !strcmp(s, "UTC") || !strcmp(s, "+00:00")) {
		*offset = 0;
		return 0;
	}
	if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || !digits(s + 1, 2, &h) || s[3] != ':' ||
	    !digits(s + 4, 2, &m) || h > 14 || m > 59)
		return -EINVAL;
	*offset = (s[0] == '-' ? -1 : 1) * (h * 3600 + m * 60);
	return 0;
}

int wj_duration_parse(const char *s, uint64_t *ms)
{
	if (!s || !*s)
		return -EINVAL;
	const char *p = s;
	uint64_t v = 0;
	if (*p < '0' || *p > '9')
		return -EINVAL;
	while (*p >= '0' && *p <= '9') {
		if (v > UINT64_MAX / 10 - 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p++ - '0');
	}
	uint64_t mul;
	if (!strcmp(p, "ms"))
		mul = 1;
	else if (!strcmp(p, "s"))
		mul = 1000;
	else if (!strcmp(p, "m"))
		mul = 60 * 1000;
	else if (!strcmp(p, "h"))
		mul = 3600 * 1000;
	else if (!strcmp(p, "d"))
		mul = 86400 * 1000;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -EINVAL;
	*ms = v * mul;
	return 0;
}

int wj_size_parse(const char *s, uint64_t *bytes)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	const char *p = s;
	uint64_t v = 0;
	while (*p >= '0' && *p <= '9') {
		if (v > UINT64_MAX / 10 - 10)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*p++ - '0');
	}
	uint64_t mul;
	if (!*p || !strcmp(p, "B"))
		mul = 1;
	else if (!strcmp(p, "KiB"))
		mul = 1ULL << 10;
	else if (!strcmp(p, "MiB"))
		mul = 1ULL << 20;
	else if (!strcmp(p, "GiB"))
		mul = 1ULL << 30;
	else if (!strcmp(p, "TiB"))
		mul = 1ULL << 40;
	else
		return -EINVAL;
	if (v > UINT64_MAX / mul)
		return -EINVAL;
	*bytes = v * mul;
	return 0;
}

static int buf_reserve(wj_buf_t *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *d = realloc(b->data, cap);
	if (!d)
		return -ENOMEM;
	b->data = d;
	b->cap = cap;
	return 0;
}

int wj_buf_append(wj_buf_t *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -ENOMEM;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int wj_buf_printf(wj_buf_t *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	if (buf_reserve(b, (size_t)n) < 0)
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void wj_buf_reset(wj_buf_t *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void wj_buf_free(wj_buf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void wj_hex(const unsigned char *in, size_t n, char *out, bool upper)
{
	const char *digs = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digs[in[i] >> 4];
		out[2 * i + 1] = digs[in[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Create a new temporary file beside path: "PATH.PID.N.tmp", created exclusively and never
 * through a symbolic link (O_EXCL refuses any existing name, a link included); a name already
 * taken is skipped. The name goes to tmp. An fd or -errno. */
static int open_temp(const char *path, unsigned mode, char *tmp, size_t size)
{
	static atomic_uint seq;
	for (int i = 0; i < TEMP_TRIES; i++) {
		int n = snprintf(tmp, size, "%s.%ld.%u.tmp", path, (long)getpid(),
				 atomic_fetch_add(&seq, 1));
		if (n < 0 || (size_t)n >= size)
			return -ENAMETOOLONG;
		int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY,
			      mode & 0777);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* fsync the directory holding path, so that a rename into it survives a crash. */
static int sync_dir(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if (snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int ret = fsync(fd) < 0 && errno != EINVAL ? -errno : 0; /* EINVAL: cannot be synced */
	close(fd);
	return ret;
}

int wj_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char tmp[4096];
	int fd = open_temp(path, mode, tmp, sizeof(tmp));
	if (fd < 0)
		return fd;
	int ret = fchmod(fd, mode & 0777) < 0 ? -errno : 0; /* exactly mode, whatever the umask */
	if (ret == 0)
		ret = write_all(fd, data, len);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0) {
		unlink(tmp);
		return ret;
	}
	return sync_dir(path);
}
