/* daemon_metrics: see daemon_metrics.h. The body of a scrape is rendered
 * at request time: counters from the shared region, cert_expiry from the
 * certificates the server has loaded (every tls section a listener uses,
 * every tls_client an upstream uses) against the clock of that moment. */
#include "daemon_metrics.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "tls.h"
#include "xmem.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int m_fd = -1;
static struct metrics_http *m_http;
static const struct server *m_srv;	/* whose certificates a scrape shows */

int daemon_metrics_start(const struct conf *c, char *err, size_t errsz)
{
	if (!c->metrics[0])
		return 0;
	if (metrics_init(c) < 0) {
		snprintf(err, errsz, "metrics: cannot map the shared counters");
		return -1;
	}
	m_fd = metrics_http_bind(c->metrics, err, errsz);
	if (m_fd < 0)
		return -1;
	log_info("metrics on %s (GET /metrics)", c->metrics);
	return 0;
}

static void add_certs(struct metrics_cert **v, size_t *n, const struct tls_cert_info *ci, size_t k)
{
	if (!k)
		return;
	*v = xreallocarray(*v, *n + k, sizeof(**v));
	for (size_t i = 0; i < k; i++) {
		(*v)[*n + i].name = ci[i].file;
		(*v)[*n + i].not_after = ci[i].not_after;
	}
	*n += k;
}

static char *body(void *arg, size_t *len)
{
	const struct server *srv = m_srv;
	const struct conf *c = srv->conf;
	const struct tls_cert_info *ci = NULL;
	struct metrics_cert *certs = NULL;
	size_t n = 0;
	for (size_t i = 0; i < c->ntls; i++) {
		size_t k = srv->tls[i] ? tls_server_certs(srv->tls[i], &ci) : 0;
		add_certs(&certs, &n, ci, k);
	}
	for (size_t i = 0; i < c->nupstreams; i++) {
		size_t k = srv->tls_clients[i] ? tls_client_certs(srv->tls_clients[i], &ci) : 0;
		add_certs(&certs, &n, ci, k);
	}
	char *out = metrics_render_alloc(certs, n, time(NULL), len);
	free(certs);
	return out;
}

void daemon_metrics_serve(const struct server *srv, unsigned workers)
{
	if (m_fd < 0)
		return;
	m_srv = srv;
	metrics_set_workers(workers);
	m_http = metrics_http_start(m_fd, body, NULL);
	m_fd = -1;	/* the endpoint's now */
}

void daemon_metrics_server(const struct server *srv)
{
	m_srv = srv;
	if (srv)
		metrics_register(srv->conf);
}

void daemon_metrics_forget(void)
{
	metrics_http_abandon(&m_http);
	if (m_fd >= 0)
		close(m_fd);
	m_fd = -1;
}

void daemon_metrics_stop(void)
{
	metrics_http_stop(m_http);
}

void daemon_metrics_free(void)
{
	metrics_http_free(&m_http);
	if (m_fd >= 0)
		close(m_fd);
	m_fd = -1;
	metrics_fini();
}
