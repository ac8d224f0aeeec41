/* Helpers for WDT JSON, where numbers often arrive as strings ("3.0000", "80"). */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/util.h"

/* The string value of obj[key], or NULL when absent or not a string. Borrowed from obj. */
const char *wj_json_str(const json_t *obj, const char *key);

/* A scalar (string, integer, real) as text into buf. Integers, and reals with an integral value,
 * have no fraction ("3", not "3.0"). 0, -EINVAL (NULL or not a scalar) or -ENOSPC. */
int wj_json_text(const json_t *v, char *buf, size_t size);

/* A number from a JSON number or a numeric string. Strings are strict: optional sign, digits,
 * optional fraction and exponent ("3.0000", "-2", "1e3"); no whitespace, no hex, no "NaN"/"inf".
 * 0, -EINVAL or -ERANGE (overflow). */
int wj_json_number(const json_t *v, double *out);

/* An integer from a JSON integer, a real with an integral value, or a string of digits with an
 * optional sign and an optional all-zero fraction ("80", "-3", "4.0000").
 * 0, -EINVAL or -ERANGE. */
int wj_json_int(const json_t *v, int64_t *out);

/* Exact decimals (quantities, prices): at most this many digits in all, integer and fraction
 * digits together, after leading and trailing zeros are dropped. Every such decimal reads into a
 * double that writes back as the same text (15 = DBL_DIG). */
#define WJ_DECIMAL_DIGITS 15

/* The shortest exact text of a decimal value, never with an exponent: a decimal string
 * ("3.3000" → "3.3", "10.0000" → "10", "-0.50" → "-0.5", "0.000" → "0"), an integer, or a real
 * (the shortest text that reads back as the same double). 0, or -EINVAL with *why set to a
 * static phrase ("expected a number", "expected a number without an exponent",
 * "more than 15 digits"), or -ENOSPC. */
int wj_json_decimal(const json_t *v, char *buf, size_t size, const char **why);

/* The shortest text that reads back as d, written without an exponent ("3.3", "10",
 * "0.0001"); "0" for zero. Needs up to 330 bytes for extreme values. 0, -EINVAL (not finite)
 * or -ENOSPC. */
int wj_real_text(double d, char *buf, size_t size);

/* The text of a save body: compact like json_dumps(body, JSON_COMPACT), keys in insertion
 * order, and every real in its shortest exact form (wj_real_text), so that a quantity made
 * from "3.3000" goes out as 3.3. Malloc'ed, caller frees; NULL when body is NULL, nests too
 * deep or memory runs out. */
char *wj_json_dumps_body(const json_t *body);

/* The same writing of numbers for a person to read: keys sorted, one member per line, two
 * spaces per level (like json_dumps(v, JSON_INDENT(2) | JSON_SORT_KEYS)), so that a stored body
 * shows 3.3 and not 3.2999999999999998. Malloc'ed, caller frees; NULL as above. */
char *wj_json_dumps_pretty(const json_t *v);

/* The canonical dump of v (sorted keys, compact), malloc'ed, its length in *len; NULL when v is
 * NULL or memory runs out. This is the text stored for an order and the text its hash covers. */
char *wj_json_canon(const json_t *v, size_t *len);

/* SHA-256 of data[0..len). 0 or -EIO. */
int wj_sha256(const void *data, size_t len, uint8_t out[32]);

/* SHA-256 of the canonical dump: a content hash independent of key order.
 * 0, -EINVAL (NULL), -ENOMEM or -EIO (digest failure). */
int wj_json_hash(const json_t *v, uint8_t out[32]);

/* Length of the valid UTF-8 sequence at p[0..left) (1..4), or 0 when it is invalid (overlong,
 * surrogate, beyond U+10FFFF) or cut short. left must be at least 1. */
size_t wj_utf8_seq(const unsigned char *p, size_t left);

/* Replace every invalid UTF-8 sequence of in[0..len) by U+FFFD, so that a remote answer with
 * one bad name still parses. Returns 0 when in is valid (out untouched), 1 when the repaired
 * text is in out, or -ENOMEM. */
int wj_utf8_repair(const char *in, size_t len, wj_buf_t *out);
