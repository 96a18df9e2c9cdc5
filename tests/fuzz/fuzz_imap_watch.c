/* fuzz_imap_watch: the relay's stream watchers - COMPRESS in the client's
 * stream, the response boundary in the upstream's (imap_bol) - must give
 * the same answer whatever the reads look like: the first byte picks two
 * cut points, and the rest fed in three pieces must match it fed whole
 * and byte by byte. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "imap_bol.h"
#include "imap_watch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	const char *p = (const char *)data + 2;
	size_t n = size - 2, a = n ? data[0] % (n + 1) : 0, b = n ? data[1] % (n + 1) : 0;
	if (a > b) {
		size_t t = a;
		a = b;
		b = t;
	}
	struct imap_watch whole, split, bytes;
	imap_watch_init(&whole);
	imap_watch_init(&split);
	imap_watch_init(&bytes);
	bool w = imap_watch_feed(&whole, p, n);
	imap_watch_feed(&split, p, a);
	imap_watch_feed(&split, p + a, b - a);
	bool s = imap_watch_feed(&split, p + b, n - b);
	for (size_t i = 0; i < n; i++)
		imap_watch_feed(&bytes, p + i, 1);
	if (w != s || w != bytes.compress)
		abort();

	struct imap_bol bw, bs, bb;
	imap_bol_init(&bw);
	imap_bol_init(&bs);
	imap_bol_init(&bb);
	imap_bol_feed(&bw, p, n);
	imap_bol_feed(&bs, p, a);
	imap_bol_feed(&bs, p + a, b - a);
	imap_bol_feed(&bs, p + b, n - b);
	for (size_t i = 0; i < n; i++)
		imap_bol_feed(&bb, p + i, 1);
	if (bw.at_bol != bs.at_bol || bw.at_bol != bb.at_bol || bw.literal != bs.literal ||
	    bw.literal != bb.literal)
		abort();
	/* A boundary is right after an LF (or at the start). */
	if (bw.at_bol && n && p[n - 1] != '\n')
		abort();
	return 0;
}
