/* conf: the typed, validated configuration (DESIGN.md §3). conf.c turns the
 * libconfuse tree into these structs; no other file sees libconfuse. Every
 * field remembers where it was set (file, line) so later checks - the TLS
 * credential loader among them - can report FILE:LINE errors. */
#ifndef MG_CONF_H
#define MG_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addr.h"
#include "diag.h"

enum tls_mode { TLS_MODE_NONE, TLS_MODE_STARTTLS, TLS_MODE_IMPLICIT };
enum client_cert_mode { CLIENT_CERT_UNSET = -1, CLIENT_CERT_NONE, CLIENT_CERT_OPTIONAL, CLIENT_CERT_REQUIRE };
enum proxy_out { PROXY_OUT_OFF, PROXY_OUT_V1, PROXY_OUT_V2 };
enum ext_identity { EXT_ID_EMAIL, EXT_ID_DNS, EXT_ID_CN };

/* The default TLS priorities (tls and tls_client sections; servers add
 * %SERVER_PRECEDENCE): TLS 1.3, and TLS 1.2 with ECDHE and AEAD only -
 * Mozilla's "intermediate" profile: no CBC (LUCKY13), no static-RSA key
 * exchange (no forward secrecy), no SHA-1 signatures, no finite-field DHE
 * in 1.2. */
#define CONF_TLS_PRIORITY                                                              \
	"SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-GCM:"      \
	"+AES-256-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:" \
	"-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1"

struct conf_where {
	const char *file;	/* as given on the command line or in include() */
	int line;
};

struct strlist {
	char **v;
	size_t n;
};

#define PIN_LEN 32		/* SHA-256 */
struct pinlist {
	unsigned char (*v)[PIN_LEN];
	size_t n;
};

struct cidrlist {
	struct mg_cidr *v;
	size_t n;
};

struct conf_tls {
	char *name;
	struct conf_where where;
	struct strlist cert, key, crl, alpn_ids;
	struct conf_where cert_where, key_where, crl_where, client_ca_where;
	struct conf_where ocsp_where, ticket_where, priority_where;
	char *priority;
	char *client_ca;
	struct strlist ocsp_staple;	/* DER OCSP responses, parallel to cert ("" = none) */
	char *ticket_key;
	enum client_cert_mode client_cert;
	bool client_eku_client;	/* client_eku = "client" */
	bool alpn;
};

struct conf_tls_client {
	char *name;
	struct conf_where where;
	char *cert, *key, *ca, *verify_name, *priority;
	struct conf_where cert_where, key_where, ca_where;
	struct pinlist fingerprint, spki;
	struct strlist alpn_ids;
};

struct conf_peer {
	char *name;
	struct conf_where where;
	struct pinlist fingerprint, spki;
	struct strlist names;	/* lower-case A-labels, no trailing dot */
	bool relay;
};

struct conf_upstream_addr {
	char *host;		/* as written: literal or name */
	uint16_t port;
	struct mg_addr addr;	/* resolved at load time */
	char text[MG_ADDR_STRLEN + 256];	/* "host:port" for logs */
};

struct conf_upstream {
	char *name;
	struct conf_where where;
	struct conf_upstream_addr *addrs;
	size_t naddrs;
	enum tls_mode tls;
	char *tls_client_name;
	const struct conf_tls_client *tls_client;	/* NULL: system trust, host name */
	bool xclient;
	bool forward_id;
	enum proxy_out proxy_protocol;
	int connect_timeout;
	int timeout_reply;
	int index;
};

struct conf_listener {
	char *name;
	struct conf_where where;
	struct mg_addr *addrs;
	size_t naddrs;
	enum tls_mode tls_mode;
	const struct conf_tls *tls;
	enum client_cert_mode client_cert;	/* effective (listener override applied) */
	bool require_tls;
	bool auth;
	bool peers_only;
	struct cidrlist relay_networks;
	bool proxy_protocol;
	struct cidrlist trusted_proxies;
	const struct conf_upstream *upstream;
	int max_connections;
	int max_per_ip;
	int rate_per_ip;		/* new sessions per IP per minute; 0 = off */
	int index;
};

struct conf {
	char *path;		/* as given */
	char *dir;		/* folder relative paths resolve against */

	char *hostname;
	char *user, *group, *pidfile;
	int workers;
	bool reuseport;		/* a listening socket per worker (SO_REUSEPORT) */
	int log_level;		/* enum log_level */
	int log_target;		/* enum log_target */
	char *log_file;		/* LOG_TARGET_FILE: the absolute path; else "" */
	struct conf_where log_target_where;
	int log_format;		/* enum log_format */
	char *metrics;
	int shutdown_timeout;
	int timeout_handshake;

	struct conf_tls *tls;
	size_t ntls;
	struct conf_tls_client *tls_clients;
	size_t ntls_clients;
	struct conf_peer *peers;
	size_t npeers;
	struct conf_upstream *upstreams;
	size_t nupstreams;
	struct conf_listener *listeners;
	size_t nlisteners;

	int max_errors;		/* both daemons */

	const struct conf_schema *schema;
	void *daemon;		/* the daemon's own keys (its schema's struct) */

	struct strlist files_;	/* owns the interned file names in conf_where */
};

struct conf;

/* A daemon's own top-level keys, declared as data and registered by the
 * daemon (its conf_schema): each is read into the daemon's struct at
 * offset, with its range or words checked here and, at where, the
 * FILE:LINE it was set at. The schema's check hook then normalises and
 * applies the rules between keys. */
enum conf_key_type { CK_INT, CK_U64, CK_BOOL, CK_STR, CK_PATH, CK_STRLIST, CK_KEYWORD };
#define CK_NO_WHERE ((size_t)-1)

struct conf_key {
	const char *name;
	enum conf_key_type type;
	const char *dflt;		/* as written in a file: "2048", "true", "{PLAIN, LOGIN}" */
	long min, max;			/* CK_INT, CK_U64 */
	const char *const *words;	/* CK_KEYWORD: the value stored is the index */
	size_t offset;			/* into the daemon's struct */
	size_t where;			/* of a struct conf_where there, or CK_NO_WHERE */
};

struct conf_schema {
	const char *name;		/* "smtpd": SYSCONFDIR/mailgate/smtpd.conf */
	const char *alpn_id;		/* default alpn_ids */
	bool mx_warnings;		/* warn: require_tls on port 25 (SMTP) */
	size_t size;			/* of the daemon's struct */
	const struct conf_key *keys;	/* ended by a NULL name */
	/* Optional: normalisation and rules between keys (conf_key_error). */
	void (*check)(struct conf *c, void *daemon);
	/* Optional: the files the daemon's keys name (conf_check_file). */
	void (*check_files)(const struct conf *c, const void *daemon, struct diag *d);
};

/* From a schema's check hook only: a problem with one of its keys, at the
 * FILE:LINE the key was set (or its section's). */
void conf_key_error(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void conf_key_warn(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses path (as given) with the daemon's schema. Every problem is added to d
 * as FILE:LINE: message. Returns NULL only when the file could not be
 * parsed at all; otherwise the conf, which is usable only if d->errors did
 * not grow (callers keep checking - files, TLS credentials - so that -t
 * reports every problem at once). Structural and cross-field rules are
 * checked here; files by conf_check_files() and by the TLS loader. */
struct conf *conf_load(const char *path, const struct conf_schema *schema, struct diag *d);
void conf_free(struct conf **c);

/* Checks every file the configuration names: existence, readability,
 * secret-file permissions (others: error, group: warning). */
void conf_check_files(const struct conf *c, struct diag *d);

/* One file named by key at w: it must be a readable regular file; a
 * secret one must not be readable by others (error) nor by the group
 * (warning). "" and pkcs11: URLs pass. Returns -1 after reporting an
 * error, else 0. conf_check_files() and the TLS loader both use it, with
 * the same words, so a problem both meet is printed once (diag.h). */
int conf_check_file(struct diag *d, struct conf_where w, const char *key, const char *path, int secret);

/* ticket_key: conf_check_file() as a secret, and exactly
 * TLS_TICKET_KEY_FILE_LEN bytes. Returns -1 after reporting an error. */
#define TLS_TICKET_KEY_FILE_LEN 64
int conf_check_ticket_key(struct diag *d, struct conf_where w, const char *path);

const struct conf_tls *conf_find_tls(const struct conf *c, const char *name);
const struct conf_upstream *conf_find_upstream(const struct conf *c, const char *name);
const char *conf_lib_version(void);
/* SYSCONFDIR/mailgate/<schema name>.conf into out. */
void conf_default_path(const struct conf_schema *schema, char *out, size_t sz);

#endif
