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

/* ---- exact decimals ------------------------------------------------------------------- */

static const char *const NOT_A_NUMBER = "expected a number";

/* The shortest exact text of a decimal written s[0..len): leading zeros of the integer part
 * and trailing zeros of the fraction dropped, at most WJ_DECIMAL_DIGITS digits. */
static int decimal_text(const char *s, size_t len, char *buf, size_t size, const char **why)
{
	const char *p = s, *end = s + len, *frac = NULL, *frac_end = NULL;
	bool neg = false;
	*why = NOT_A_NUMBER;
	if (p < end && (*p == '+' || *p == '-'))
		neg = *p++ == '-';
	const char *in = p;
	while (p < end && is_digit(*p))
		p++;
	const char *in_end = p;
	if (in == in_end)
		return -EINVAL;
	if (p < end && *p == '.') {
		frac = ++p;
		while (p < end && is_digit(*p))
			p++;
		frac_end = p;
		if (frac == frac_end)
			return -EINVAL;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		const char *e = ++p;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		while (p < end && is_digit(*p))
			p++;
		if (p == end && is_digit(p[-1]) && p - e >= 1)
			*why = "expected a number without an exponent";
		return -EINVAL;
	}
	if (p != end)
		return -EINVAL;
	while (in < in_end && *in == '0')
		in++;
	while (frac && frac_end > frac && frac_end[-1] == '0')
		frac_end--;
	size_t ni = (size_t)(in_end - in), nf = frac ? (size_t)(frac_end - frac) : 0;
	if (ni + nf > WJ_DECIMAL_DIGITS) {
		*why = "more than 15 digits";
		return -EINVAL;
	}
	*why = NULL;
	if (ni + nf == 0)
		return copy_text(buf, size, "0", 1);
	char tmp[WJ_DECIMAL_DIGITS + 4];
	size_t o = 0;
	if (neg)
		tmp[o++] = '-';
	if (ni == 0)
		tmp[o++] = '0';
	memcpy(tmp + o, in, ni);
	o += ni;
	if (nf) {
		tmp[o++] = '.';
		memcpy(tmp + o, frac, nf);
		o += nf;
	}
	return copy_text(buf, size, tmp, o);
}

/* The shortest decimal form of d (finite, not zero): its significant digits (1 to 17, the
 * last one not zero) into digits, and the decimal exponent of the first: d = D.DDD × 10^exp.
 * Returns the number of digits. */
static int shortest_digits(double d, char digits[18], int *exp)
{
	char tmp[40];
	int p;
	for (p = 1; p < 17; p++) {
		snprintf(tmp, sizeof(tmp), "%.*e", p - 1, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	snprintf(tmp, sizeof(tmp), "%.*e", p - 1, fabs(d));
	int n = 0;
	const char *q;
	for (q = tmp; *q != 'e'; q++)
		if (is_digit(*q))
			digits[n++] = *q;
	while (n > 1 && digits[n - 1] == '0')
		n--;
	digits[n] = '\0';
	*exp = atoi(q + 1);
	return n;
}

/* Digits the positional form of D.DDD × 10^exp (n digits) has in all: integer digits (none
 * below 1) and fraction digits. */
static size_t positional_digits(int n, int exp)
{
	int frac = n - 1 - exp > 0 ? n - 1 - exp : 0;
	return (size_t)frac + (exp >= 0 ? (size_t)exp + 1 : 0);
}

int wj_real_text(double d, char *buf, size_t size)
{
	if (!isfinite(d))
		return -EINVAL;
	if (d == 0)
		return copy_text(buf, size, "0", 1);
	char digits[18];
	int exp, n = shortest_digits(d, digits, &exp);
	size_t digits_all = positional_digits(n, exp);
	size_t need = (d < 0) + digits_all + (exp < 0 ? 2 : (size_t)exp + 1 < digits_all);
	if (need >= size) /* sign, digits, "0." below 1 or a point inside */
		return -ENOSPC;
	size_t o = 0;
	if (d < 0)
		buf[o++] = '-';
	if (exp < 0) {
		buf[o++] = '0';
		buf[o++] = '.';
		for (int i = 0; i < -exp - 1; i++)
			buf[o++] = '0';
		memcpy(buf + o, digits, (size_t)n);
		o += (size_t)n;
	} else {
		for (int i = 0; i <= exp || i < n; i++) {
			if (i == exp + 1)
				buf[o++] = '.';
			buf[o++] = i < n ? digits[i] : '0';
		}
	}
	buf[o] = '\0';
	return 0;
}

int wj_json_decimal(const json_t *v, char *buf, size_t size, const char **why)
{
	char tmp[32];
	*why = NOT_A_NUMBER;
	if (json_is_string(v))
		return decimal_text(json_string_value(v), json_string_length(v), buf, size, why);
	if (json_is_integer(v)) {
		int n = snprintf(tmp, sizeof(tmp), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return decimal_text(tmp, (size_t)n, buf, size, why);
	}
	if (!json_is_real(v) || !isfinite(json_real_value(v)))
		return -EINVAL;
	double d = json_real_value(v);
	char digits[18];
	int exp = 0, n = d != 0 ? shortest_digits(d, digits, &exp) : 1;
	if (positional_digits(n, exp) > WJ_DECIMAL_DIGITS) {
		*why = "more than 15 digits";
		return -EINVAL;
	}
	*why = NULL;
	return wj_real_text(d, buf, size);
}

/* ---- the save body as sent ------------------------------------------------------------ */

#define BODY_MAX_DEPTH 64

static int dump_string(wj_buf_t *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	int r = wj_buf_append(b, "\"", 1);
	size_t run = 0;
	for (size_t i = 0; i < len && r == 0; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		r = wj_buf_append(b, s + run, i - run);
		run = i + 1;
		char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
		size_t n = 2;
		switch (c) {
		case '"': case '\\': break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
		}
		if (r == 0)
			r = wj_buf_append(b, esc, n);
	}
	if (r == 0)
		r = wj_buf_append(b, s + run, len - run);
	return r == 0 ? wj_buf_append(b, "\"", 1) : r;
}

static int cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A line break and two spaces per level, when pretty (depth <= BODY_MAX_DEPTH + 1). */
static int dump_break(wj_buf_t *b, int depth, bool pretty)
{
	static const char spaces[2 * BODY_MAX_DEPTH + 2] = {[0 ... 2 * BODY_MAX_DEPTH + 1] = ' '};
	if (!pretty)
		return 0;
	int r = wj_buf_append(b, "\n", 1);
	return r == 0 ? wj_buf_append(b, spaces, 2 * (size_t)depth) : r;
}

/* pretty: keys sorted, one member per line indented by two spaces per level. */
static int dump_value(wj_buf_t *b, const json_t *v, int depth, bool pretty)
{
	char num[400];
	int r = 0;
	if (depth > BODY_MAX_DEPTH)
		return -EINVAL;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		/* a body keeps its insertion order; pretty output sorts the keys */
		size_t n = json_object_size(v), i = 0;
		const char **keys = pretty && n ? malloc(n * sizeof(*keys)) : NULL;
		const char *k;
		json_t *x;
		if (pretty && n && !keys)
			return -ENOMEM;
		if (keys) {
			json_object_foreach((json_t *)v, k, x)
				keys[i++] = k;
			qsort(keys, n, sizeof(*keys), cmp_keys);
		}
		r = wj_buf_append(b, "{", 1);
		i = 0;
		json_object_foreach((json_t *)v, k, x) {
			/* the macro walks on from k: never reassign it */
			const char *key = keys ? keys[i] : k;
			const json_t *val = keys ? json_object_get(v, key) : x;
			if (r == 0 && i)
				r = wj_buf_append(b, ",", 1);
			i++;
			if (r == 0)
				r = dump_break(b, depth + 1, pretty);
			if (r == 0)
				r = dump_string(b, key, strlen(key));
			if (r == 0)
				r = wj_buf_append(b, pretty ? ": " : ":", pretty ? 2 : 1);
			if (r == 0)
				r = dump_value(b, val, depth + 1, pretty);
		}
		free(keys);
		if (r == 0 && n)
			r = dump_break(b, depth, pretty);
		return r == 0 ? wj_buf_append(b, "}", 1) : r;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *x;
		r = wj_buf_append(b, "[", 1);
		json_array_foreach(v, i, x) {
			if (r == 0 && i)
				r = wj_buf_append(b, ",", 1);
			if (r == 0)
				r = dump_break(b, depth + 1, pretty);
			if (r == 0)
				r = dump_value(b, x, depth + 1, pretty);
		}
		if (r == 0 && json_array_size(v))
			r = dump_break(b, depth, pretty);
		return r == 0 ? wj_buf_append(b, "]", 1) : r;
	}
	case JSON_STRING:
		return dump_string(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return wj_buf_printf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	case JSON_REAL:
		r = wj_real_text(json_real_value(v), num, sizeof(num));
		return r == 0 ? wj_buf_append(b, num, strlen(num)) : r;
	case JSON_TRUE:
		return wj_buf_append(b, "true", 4);
	case JSON_FALSE:
		return wj_buf_append(b, "false", 5);
	case JSON_NULL:
	default:
		return wj_buf_append(b, "null", 4);
	}
}

static char *dumps(const json_t *v, bool pretty)
{
	wj_buf_t b = {0};
	if (!v || dump_value(&b, v, 0, pretty) < 0 || !b.data) {
		wj_buf_free(&b);
		return NULL;
	}
	return b.data; /* NUL-terminated; the caller frees it */
}

char *wj_json_dumps_body(const json_t *body)
{
	return dumps(body, false);
}

char *wj_json_dumps_pretty(const json_t *v)
{
	return dumps(v, true);
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
