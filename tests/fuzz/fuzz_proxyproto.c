/* fuzz_proxyproto: PROXY v1/v2 headers; a parsed header re-built must
 * parse to the same addresses. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pp_info in, again;
	size_t used = 0, used2 = 0;
	if (pp_parse(data, size, &in, &used) != PP_OK)
		return 0;
	if (used == 0 || used > size)
		abort();
	if (in.local)
		return 0;
	unsigned char out[600];
	size_t n = pp_build_v2(out, sizeof(out), &in.src, &in.dst, NULL);
	if (!n || pp_parse(out, n, &again, &used2) != PP_OK || used2 != n)
		abort();
	if (memcmp(&again.src.u, &in.src.u, sizeof(in.src.u)) != 0)
		abort();
	return 0;
}
