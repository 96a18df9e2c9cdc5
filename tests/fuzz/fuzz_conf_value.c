/* fuzz_conf_value: configuration value parsers - pins, CIDRs, host:port,
 * domain normalisation - and the log escaping applied to client bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "conf_value.h"
#include "domain.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	unsigned char pin[32];
	const char *err;
	conf_parse_pin(s, pin, 1, &err);
	struct mg_cidr c;
	addr_parse_cidr(s, &c, &err);
	char host[256], out[2048];
	uint16_t port;
	if (addr_split_hostport(s, host, sizeof(host), &port, &err) == 0) {
		struct mg_addr a;
		addr_from_literal(host, port, &a);
	}
	domain_normalize(s, strlen(s), host, sizeof(host));
	log_escape_value(out, sizeof(out), data, size);
	log_escape_json(out, sizeof(out), data, size);
	free(s);
	return 0;
}
