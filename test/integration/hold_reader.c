/* hold_reader STATE_DIR: open the store, begin a read transaction, print "holding" and wait
 * inside it until killed. Stands in for a wdt2jdyctl killed in the middle of a command, which
 * leaves its reader slot behind in the lock file. */
#include <stdio.h>
#include <unistd.h>

#include "lib/store.h"

int main(int argc, char **argv)
{
	wj_store_t *s;
	wj_txn_t t;
	if (argc != 2) {
		fprintf(stderr, "usage: hold_reader STATE_DIR\n");
		return 2;
	}
	if (wj_store_open(argv[1], 0, 0, &s) < 0 || wj_txn_begin(s, &t, false) < 0) {
		fprintf(stderr, "hold_reader: %s\n", wj_store_strerror());
		return 1;
	}
	printf("holding %ld\n", (long)getpid());
	fflush(stdout);
	for (;;)
		pause();
}
