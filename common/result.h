/* result: how a session ended - the result tokens of DESIGN.md §7 as an
 * enum with one table of names (session logs and metrics use the names,
 * code compares the numbers). */
#ifndef MG_RESULT_H
#define MG_RESULT_H

#define SESSION_RESULTS(X)                                                     \
	X(RESULT_OK, "ok") X(RESULT_QUIT, "quit") X(RESULT_TIMEOUT, "timeout")   \
	X(RESULT_TLS_FAILED, "tls-failed") X(RESULT_CERT_REJECTED, "cert-rejected") \
	X(RESULT_RELAY_DENIED, "relay-denied") X(RESULT_TOO_MANY_ERRORS, "too-many-errors") \
	X(RESULT_AUTH_FAILURES, "auth-failures") X(RESULT_UPSTREAM_FAILED, "upstream-failed") \
	X(RESULT_LIMIT, "limit") X(RESULT_SHUTDOWN, "shutdown") X(RESULT_ERROR, "error")
#define SESSION_RESULT_ENUM(id, name) id,
/* RESULT_UNCHANGED: "keep the one recorded" (session_close). */
enum session_result { SESSION_RESULTS(SESSION_RESULT_ENUM) RESULT_UNCHANGED };
#undef SESSION_RESULT_ENUM

const char *session_result_name(enum session_result r);

#endif
