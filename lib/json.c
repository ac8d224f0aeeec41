#include "lib/json.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

const char *wj_json_str(const json_t *obj, const char *key)
{
	if (!json_is_object(obj) || !key)
		return NULL;
	return json_string_value(json_object_get(obj, key));
}

static int copy_text(char *buf, size_t size, const char *s, size_t len)
{
	if (len >= size)
		return -ENOSPC;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return 0;
}

/* An integral double that fits int64_t exactly (2^63 itself does not). */
static bool real_is_int64(double d)
{
	return isfinite(d) && d == floor(d) && d >= -9223372036854775808.0 &&
	       d < 9223372036854775808.0;
}

int wj_json_text(const json_t *v, char *buf, size_t size)
{
	char tmp[64];
	int n;
	if (!v || !buf || !size)
		return -EINVAL;
	switch (json_typeof(v)) {
	case JSON_STRING:
		return copy_text(buf, size, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		n = snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		break;
	case JSON_REAL: {
		double d = json_real_value(v);
		if (real_is_int64(d)) {
			n = snprintf(tmp, sizeof(tmp), "%lld", (long long)d);
			break;
		}
		/* shortest of 15 or 17 significant digits that reads back the same */
		n = snprintf(tmp, sizeof(tmp), "%.15g", d);
		if (strtod(tmp, NULL) != d)
			n = snprintf(tmp, sizeof(tmp), "%.17g", d);
		break;
	}
	default:
		return -EINVAL;
	}
	if (n < 0)
		return -EINVAL;
	return copy_text(buf, size, tmp, (size_t)n);
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Strict decimal syntax: [+-]? D+ ( . D+ )? ( [eE] [+-]? D+ )? with the whole string consumed. */
static bool number_syntax(const char *s)
{
	const char *p = s;
	if (*p == '+' || *p == '-')
		p++;
	if (!is_digit(*p))
		return false;
	while (is_digit(*p))
		p++;
	if (*p == '.') {
		p++;
		if (!is_digit(*p))
			return false;
		while (is_digit(*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!is_digit(*p))
			return false;
		while (is_digit(*p))
			p++;
	}
	return *p == '\0';
}

int wj_json_number(const json_t *v, double *out)
{
	if (!v)
		return -EINVAL;
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -EINVAL;
	const char *s = json_string_value(v);
	if (strlen(s) != json_string_length(v) || !number_syntax(s))
		return -EINVAL;
	double d = strtod(s, NULL);
	if (!isfinite(d))
		return -ERANGE;
	*out = d;
	return 0;
}

int wj_json_int(const json_t *v, int64_t *out)
{
	if (!v)
		return -EINVAL;
	if (json_is_integer(v)) {
		*out = (int64_t)json_integer_value(v);
		return 0;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!isfinite(d) || d != floor(d))
			return -EINVAL;
		if (!real_is_int64(d))
			return -ERANGE;
		*out = (int64_t)d;
		return 0;
	}
	if (!json_is_string(v))
		return -EINVAL;
	const char *p = json_string_value(v);
	if (strlen(p) != json_string_length(v))
		return -EINVAL;
	bool neg = false;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (!is_digit(*p))
		return -EINVAL;
	/* accumulate as a negative number so that INT64_MIN fits */
	int64_t acc = 0;
	bool overflow = false;
	for (; is_digit(*p); p++) {
		int dig = *p - '0';
		if (acc < (INT64_MIN + dig) / 10)
			overflow = true;
		else
			acc = acc * 10 - dig;
	}
	if (*p == '.') {
		p++;
		if (!is_digit(*p))
			return -EINVAL;
		while (*p == '0')
			p++;
	}
	if (*p != '\0')
		return -EINVAL;
	if (overflow || (!neg && acc == INT64_MIN))
		return -ERANGE;
	*out = neg ? acc : -acc;
	return 0;
}

char *wj_json_canon(const json_t *v, size_t *len)
{
	*len = 0;
	if (!v)
		return NULL;
	char *s = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENCODE_ANY);
	if (s)
		*len = strlen(s);
	return s;
}

int wj_sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned n = 0;
	int ok = EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
	return ok == 1 && n == 32 ? 0 : -EIO;
}

int wj_json_hash(const json_t *v, uint8_t out[32])
{
	if (!v)
		return -EINVAL;
	size_t len;
	char *s = wj_json_canon(v, &len);
	if (!s)
		return -ENOMEM;
	int r = wj_sha256(s, len, out);
	free(s);
	return r;
}

size_t wj_utf8_seq(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	size_t n;
	uint32_t min, cp;
	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0)
		n = 2, min = 0x80, cp = c & 0x1F;
	else if ((c & 0xF0) == 0xE0)
		n = 3, min = 0x800, cp = c & 0x0F;
	else if ((c & 0xF8) == 0xF0)
		n = 4, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

int wj_utf8_repair(const char *in, size_t len, wj_buf_t *out)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0, start = 0;
	int repaired = 0;
	while (i < len) {
		size_t n = wj_utf8_seq(p + i, len - i);
		if (n) {
			i += n;
			continue;
		}
		if (!repaired)
			wj_buf_reset(out);
		if (wj_buf_append(out, in + start, i - start) < 0 ||
		    wj_buf_append(out, "\xEF\xBF\xBD", 3) < 0)
			return -ENOMEM;
		repaired = 1;
		start = ++i;
	}
	if (repaired && wj_buf_append(out, in + start, len - start) < 0)
		return -ENOMEM;
	return repaired;
}
