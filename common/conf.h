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

enum daemon_kind { DAEMON_SMTPD, DAEMON_IMAPD };
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

/* Range of max_line (smtpd): RFC 5321 §4.5.3.1.4's 512 up to 64 KiB. */
#define CONF_MAX_LINE_MIN 512
#define CONF_MAX_LINE_LIMIT 65536

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
	char *ocsp_staple;
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
	int index;
};

struct conf {
	enum daemon_kind kind;
	char *path;		/* as given */
	char *dir;		/* folder relative paths resolve against */

	char *hostname;
	char *user, *group, *pidfile;
	int workers;
	int log_level;		/* enum log_level */
	int log_target;		/* enum log_target */
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

	/* smtpd */
	struct strlist accept_domains;	/* lower-case A-labels; ".x" kept as is */
	uint64_t max_message_size;
	int max_recipients;
	int max_line;		/* CONF_MAX_LINE_MIN..CONF_MAX_LINE_LIMIT */
	int max_errors;		/* both daemons */
	bool received_header;
	bool reverse_dns;
	struct strlist auth_mechanisms;	/* upper case */
	int timeout_command;
	int timeout_data;

	/* imapd */
	int timeout_preauth;
	int timeout_idle;
	int max_auth_failures;
	int max_literal;
	char *user_map;
	enum ext_identity external_identity;
	char *master_user;
	char *master_password_file;
	struct conf_where master_password_where, user_map_where;

	struct strlist files_;	/* owns the interned file names in conf_where */
};

/* Parses path (as given) for the daemon kind. Every problem is added to d
 * as FILE:LINE: message. Returns NULL only when the file could not be
 * parsed at all; otherwise the conf, which is usable only if d->errors did
 * not grow (callers keep checking - files, TLS credentials - so that -t
 * reports every problem at once). Structural and cross-field rules are
 * checked here; files by conf_check_files() and by the TLS loader. */
struct conf *conf_load(const char *path, enum daemon_kind kind, struct diag *d);
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
const char *conf_default_path(enum daemon_kind kind);

#endif
