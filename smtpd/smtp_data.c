/* smtp_data: a five-state machine over the bytes after "354":
 *   BOL   at the start of a line (after CRLF)
 *   DOT   the line started with '.'
 *   DOTCR the line is "." CR so far
 *   MID   inside a line
 *   CR    a CR was seen inside a line
 * An error latches; scanning still runs to the final dot so the client's
 * reply stays in sync (OpenSMTPD smtp_tx_dataline). */
#include "smtp_data.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BLOCKS_AVX2 1
/* Set by smtp_data_init(): the CPU has AVX2 (checked at run time, so one
 * build serves every x86-64; without it the SSE2 path alone runs). */
static bool use_avx2;
#endif

void smtp_data_init(struct smtp_data_scan *s, uint64_t max)
{
	s->st = SD_BOL;
	s->size = 0;
	s->max = max;
	s->bare = s->oversize = s->done = false;
#ifdef BLOCKS_AVX2
	use_avx2 = __builtin_cpu_supports("avx2");
#endif
}

#define NOWHERE ((size_t)-1)

/* Positions inside the chunk being fed. */
struct feed {
	size_t bad_at;		/* first byte not to forward */
	size_t cr_at;		/* a pending CR in this chunk */
};

static void mark_bad(struct feed *f, size_t at)
{
	if (f->bad_at == NOWHERE)
		f->bad_at = at;
}

/* A bare CR was pending: mark it (or the chunk start, when it came in an
 * earlier chunk). */
static void bare_cr(struct smtp_data_scan *s, struct feed *f)
{
	s->bare = true;
	mark_bad(f, f->cr_at != NOWHERE ? f->cr_at : 0);
	s->size++;
}

/* One ordinary byte or a bare LF after the start of a line. */
static void line_byte(struct smtp_data_scan *s, struct feed *f, unsigned char c, size_t i)
{
	if (c == '\n') {
		s->bare = true;
		mark_bad(f, i);
	}
	s->size++;
	s->st = SD_MID;
}

/* Offset of the first CR or LF in p[0..len), or len: one pass, sixteen
 * bytes at a time where SSE2 is there (two memchr calls per line, one
 * for each byte, were half of the scanner's cost on 78-octet lines). */
static size_t find_cr_or_lf(const char *p, size_t len)
{
	size_t i = 0;
#ifdef __SSE2__
	const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
	for (; len - i >= 16; i += 16) {
		__m128i v = _mm_loadu_si128((const void *)(p + i));
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
		if (m)
			return i + (size_t)__builtin_ctz(m);
	}
#endif
	for (; i < len; i++)
		if (p[i] == '\r' || p[i] == '\n')
			return i;
	return len;
}

#ifdef BLOCKS_AVX2
#define BLOCK 64

#define MASK64(a, b, c)                                                                    \
	((uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, c)) |                \
	 (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, c)) << 32)

/* Skips whole BLOCKs of ordinary lines from p[i] (in SD_MID): in each,
 * every CR directly followed by LF and every LF directly after a CR, the
 * byte after each LF inside the block and not '.', CR or LF - so step()
 * would leave it in SD_MID having counted BLOCK bytes of size (CRLF
 * counts 2) and placed no mark. Stops before a block that is not, and
 * before one where the size limit could fall. Returns the new i. */
__attribute__((target("avx2"))) static size_t skip_blocks_avx2(struct smtp_data_scan *s, const char *p, size_t i,
							       size_t len)
{
	const __m256i crv = _mm256_set1_epi8('\r'), lfv = _mm256_set1_epi8('\n'), dotv = _mm256_set1_epi8('.');
	while (len - i >= BLOCK && (!s->max || s->oversize || s->size + BLOCK <= s->max)) {
		__m256i a = _mm256_loadu_si256((const void *)(p + i)), b = _mm256_loadu_si256((const void *)(p + i + 32));
		uint64_t cr = MASK64(a, b, crv), lf = MASK64(a, b, lfv);
		if (cr | lf) {
			if ((cr << 1) != lf || (cr | lf) >> 63 || ((lf << 1) & (cr | lf | MASK64(a, b, dotv))))
				return i;
		}
		s->size += BLOCK;
		i += BLOCK;
	}
	return i;
}
#endif

/* Fast path inside a line: skips ordinary bytes up to the next CR or LF
 * (byte by byte, the scanner was 70% of the CPU of a large message), and
 * on through every CRLF followed by an ordinary byte (not '.', CR or LF):
 * exactly what step() does with those three bytes when no size mark
 * falls on them, so a message of ordinary lines never leaves this loop.
 * Returns the new position, still in SD_MID. */
static size_t skip_ordinary(struct smtp_data_scan *s, struct feed *f, const char *p, size_t i, size_t len)
{
	for (;;) {
#ifdef BLOCKS_AVX2
		if (use_avx2)
			i = skip_blocks_avx2(s, p, i, len);
#endif
		size_t skip = find_cr_or_lf(p + i, len - i);
		if (s->max && !s->oversize && s->size + skip > s->max) {
			s->oversize = true;
			mark_bad(f, i + (size_t)(s->max - s->size));
		}
		s->size += skip;
		i += skip;
		if (len - i < 3 || p[i] != '\r' || p[i + 1] != '\n' || p[i + 2] == '.' || p[i + 2] == '\r' ||
		    p[i + 2] == '\n')
			return i;
		if (s->max && !s->oversize && s->size + 3 > s->max)
			return i;	/* step() places the mark */
		s->size += 3;	/* CRLF counts 2, the next line's first byte 1 */
		i += 3;
	}
}

static void step(struct smtp_data_scan *s, struct feed *f, unsigned char c, size_t i)
{
	switch (s->st) {
	case SD_BOL:
		if (c == '.')
			s->st = SD_DOT;
		else if (c == '\r') {
			s->st = SD_CR;
			f->cr_at = i;
		} else
			line_byte(s, f, c, i);
		break;
	case SD_DOT:	/* the leading dot is removed (RFC 5321 §4.5.2) */
		if (c == '\r') {
			s->st = SD_DOTCR;
			f->cr_at = i;
		} else
			line_byte(s, f, c, i);
		break;
	case SD_DOTCR:
		if (c == '\n') {
			s->done = true;
			break;
		}
		bare_cr(s, f);	/* ".\r" + something: the CR was bare */
		if (c == '\r') {
			s->st = SD_CR;
			f->cr_at = i;
		} else
			line_byte(s, f, c, i);
		break;
	case SD_MID:
		if (c == '\r') {
			s->st = SD_CR;
			f->cr_at = i;
		} else
			line_byte(s, f, c, i);
		break;
	case SD_CR:
		if (c == '\n') {
			s->size += 2;
			s->st = SD_BOL;
			break;
		}
		bare_cr(s, f);
		if (c == '\r')
			f->cr_at = i;	/* still in SD_CR */
		else
			line_byte(s, f, c, i);
		break;
	}
	if (s->max && s->size > s->max && !s->oversize) {
		s->oversize = true;
		mark_bad(f, i);
	}
}

struct smtp_data_result smtp_data_feed(struct smtp_data_scan *s, const char *p, size_t len)
{
	struct smtp_data_result r = { 0, 0 };
	bool was_bad = s->bare || s->oversize;
	struct feed f = { NOWHERE, NOWHERE };
	size_t i;

	for (i = 0; i < len && !s->done; i++) {
		if (s->st == SD_MID && (i = skip_ordinary(s, &f, p, i, len)) >= len)
			break;
		step(s, &f, (unsigned char)p[i], i);
	}
	r.consumed = i;
	if (was_bad)
		r.clean = 0;
	else if (f.bad_at != NOWHERE)
		r.clean = f.bad_at;
	else
		r.clean = r.consumed;
	return r;
}
