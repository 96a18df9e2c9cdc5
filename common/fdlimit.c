/* fdlimit: see fdlimit.h. The sum of max_connections over the listeners
 * is what one process may have to hold (DESIGN.md §3 counts it across
 * workers; the master will share it out). A shortfall is not an error:
 * the daemon runs with what it got and says how many sessions fit, so
 * that an admin who sees "accept: Too many open files" knows why. */
#include "fdlimit.h"
#include "conn.h"
#include "log.h"
#include "process.h"

#include <sys/resource.h>

struct fdneed {
	unsigned long connections;	/* max_connections, all listeners */
	unsigned long sessions_fds;	/* 2 per session + FDLIMIT_RESERVE */
	unsigned long want;		/* sessions_fds + the linger budget */
};

static struct fdneed need(const struct conf *c)
{
	struct fdneed n = { 0, FDLIMIT_RESERVE, 0 };
	for (size_t i = 0; i < c->nlisteners; i++)
		n.connections += (unsigned long)c->listeners[i].max_connections;
	n.sessions_fds += 2 * n.connections;
	n.want = n.sessions_fds + CONN_LINGER_MAX;
	return n;
}

/* Sessions that fit in limit descriptors, two each. */
static unsigned long sessions_fit(unsigned long limit)
{
	return limit > FDLIMIT_RESERVE ? (limit - FDLIMIT_RESERVE) / 2 : 0;
}

/* Lingering close keeps at least an eighth of a short limit: a close
 * without lingering can become an RST that destroys the client's last
 * reply. */
static unsigned long linger_share(unsigned long nofile, unsigned long sessions_fds)
{
	unsigned long spare = nofile > sessions_fds ? nofile - sessions_fds : 0;
	if (nofile == 0)
		spare = CONN_LINGER_MAX;	/* unknown limit: the default */
	else if (spare < nofile / 8)
		spare = nofile / 8;
	return spare < CONN_LINGER_MAX ? spare : CONN_LINGER_MAX;
}

size_t fdlimit_apply(const struct conf *c)
{
	struct fdneed n = need(c);
	unsigned long hard = 0;
	unsigned long nofile = process_raise_nofile(n.want, &hard);
	unsigned long linger = linger_share(nofile, n.sessions_fds);
	conn_set_linger_budget((unsigned)linger);
	if (nofile == 0 || nofile >= n.sessions_fds) {
		log_info("open-file limit %lu: room for max_connections = %lu", nofile, n.connections);
		return (size_t)n.connections;
	}
	unsigned long fit = sessions_fit(nofile - linger);
	log_warn("open-file limit %lu (hard limit %lu; raising it to %lu was refused): about %lu "
		 "sessions fit, not the %lu of max_connections; raise the hard limit "
		 "(LimitNOFILE= in the systemd unit, ulimit -Hn, limits.conf) or lower "
		 "max_connections", nofile, hard, n.want, fit, n.connections);
	return fit ? (size_t)fit : 1;
}

size_t fdlimit_capacity(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return 0;
	unsigned long nofile = (unsigned long)rl.rlim_cur;
	unsigned long linger = nofile / 8 < CONN_LINGER_MAX ? nofile / 8 : CONN_LINGER_MAX;
	return (size_t)sessions_fit(nofile - linger);
}

void fdlimit_check(const struct conf *c, struct diag *d)
{
	struct fdneed n = need(c);
	unsigned long hard = 0;
	unsigned long nofile = process_raise_nofile(n.want, &hard);
	if (nofile >= n.sessions_fds || c->nlisteners == 0)
		return;
	/* FILE:LINE of the listener that asks for the most. */
	const struct conf_listener *big = &c->listeners[0];
	for (size_t i = 1; i < c->nlisteners; i++)
		if (c->listeners[i].max_connections > big->max_connections)
			big = &c->listeners[i];
	diag_warn(d, big->where.file, big->where.line, "max_connections = %lu (over all listeners) needs %lu open "
		  "files, but the limit can only be raised to %lu (hard limit %lu): about %lu "
		  "sessions fit; raise the hard limit (LimitNOFILE= in the systemd unit, "
		  "ulimit -Hn) or lower max_connections", n.connections, n.sessions_fds, nofile,
		  hard, sessions_fit(nofile));
}
