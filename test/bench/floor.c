/* The JSON floor: CPU time per order of the least any daemon built on jansson must do with a
 * WDT page (parse it), and of what wdt2jdyd does with it off the loop (parse, then the
 * canonical text and its SHA-256 for each order), measured with the daemon's own functions.
 *
 *     bench_floor PAGES_FILE [REPEAT]
 *
 * PAGES_FILE holds one WDT answer per line ({"code":0,"total_count":N,"stockin_list":[...]}).
 * Each line is timed REPEAT times (default 9) with the thread's CPU clock; the fastest pass of
 * each step counts, so that other processes on the machine inflate the figure as little as
 * possible. Prints one JSON object: orders, bytes_per_order, parse_ms_per_order,
 * canon_hash_ms_per_order and prep_ms_per_order (their sum). Exit 1 on any failure. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/json.h"
#include "lib/wdt.h"

static double cpu_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

typedef struct page {
	char *text;
	size_t len;
} page_t;

/* One pass over every page: CPU seconds spent parsing, and in canonical text + hash. */
static int pass(const page_t *pages, size_t n, double *parse_s, double *canon_s, size_t *orders)
{
	*parse_s = *canon_s = 0;
	*orders = 0;
	for (size_t i = 0; i < n; i++) {
		wj_wdt_result_t res;
		double t0 = cpu_s();
		int r = wj_wdt_parse(200, pages[i].text, pages[i].len, -1, &res);
		double t1 = cpu_s();
		if (r < 0) {
			fprintf(stderr, "bench_floor: page %zu: %s\n", i + 1, res.error);
			wj_wdt_result_clear(&res);
			return -1;
		}
		size_t k;
		json_t *o;
		int bad = 0;
		json_array_foreach(res.orders, k, o) {
			size_t len;
			uint8_t hash[32];
			char *s = wj_json_canon(o, &len);
			bad |= !s || wj_sha256(s, len, hash) < 0;
			free(s);
		}
		*parse_s += t1 - t0;
		*canon_s += cpu_s() - t1;
		*orders += json_array_size(res.orders);
		wj_wdt_result_clear(&res);
		if (bad)
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: bench_floor PAGES_FILE [REPEAT]\n");
		return 2;
	}
	int repeat = argc == 3 ? atoi(argv[2]) : 9;
	if (repeat < 1) {
		fprintf(stderr, "bench_floor: REPEAT must be a positive count\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "r");
	if (!f) {
		fprintf(stderr, "bench_floor: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	page_t *pages = NULL;
	size_t n = 0, cap = 0, bytes = 0;
	char *line = NULL;
	size_t lcap = 0;
	ssize_t got;
	while ((got = getline(&line, &lcap, f)) > 0) {
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			page_t *v = realloc(pages, cap * sizeof(*v));
			if (!v) {
				fprintf(stderr, "bench_floor: out of memory\n");
				exit(1);
			}
			pages = v;
		}
		pages[n++] = (page_t){.text = line, .len = (size_t)got};
		bytes += (size_t)got;
		line = NULL;
		lcap = 0;
	}
	free(line);
	fclose(f);
	double best_parse = 0, best_canon = 0;
	size_t orders = 0;
	int failed = 0;
	for (int r = 0; r < repeat && !failed; r++) {
		double ps, cs;
		failed = pass(pages, n, &ps, &cs, &orders) < 0;
		if (r == 0 || ps < best_parse)
			best_parse = ps;
		if (r == 0 || cs < best_canon)
			best_canon = cs;
	}
	for (size_t i = 0; i < n; i++)
		free(pages[i].text);
	free(pages);
	if (failed)
		return 1;
	if (!orders) {
		fprintf(stderr, "bench_floor: %s: no orders\n", argv[1]);
		return 1;
	}
	printf("{\"orders\": %zu, \"bytes_per_order\": %.0f, \"parse_ms_per_order\": %.4f, "
	       "\"canon_hash_ms_per_order\": %.4f, \"prep_ms_per_order\": %.4f}\n",
	       orders, (double)bytes / (double)orders, 1000.0 * best_parse / (double)orders,
	       1000.0 * best_canon / (double)orders,
	       1000.0 * (best_parse + best_canon) / (double)orders);
	return 0;
}
