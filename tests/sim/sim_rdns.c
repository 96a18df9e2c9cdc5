/* sim_rdns: common/rdns.h for the simulation (see sim.h). A lookup waits
 * until the driver answers it (sim_rdns_answer, oldest first) or its
 * timeout passes on the virtual clock (RDNS_TEMP, as c-ares timing out);
 * either way the callback runs exactly once, from the loop, unless the
 * query was cancelled first. */
#include "rdns.h"
#include "sim.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define Q_MAGIC 0x52444e53u

struct rdns_query {
	uint32_t magic;
	rdns_cb cb;
	void *arg;
	bool answered;
	enum rdns_status st;
	char name[256];
	ev_timer t;		/* the deadline, then the delivery tick */
	struct rdns_query *next;
};

static struct rdns_query *queries;
static bool ready, init_fails;

void sim_rdns_reset(void)
{
	queries = NULL;		/* a previous world's queries are forgotten */
	ready = init_fails = false;
}

void sim_rdns_init_fails(bool fail)
{
	init_fails = fail;
}

static struct rdns_query *Q(struct rdns_query *q)
{
	if (!q || q->magic != Q_MAGIC)
		sim_fail("bad rdns query %p", (void *)q);
	return q;
}

static void unlink_free(struct rdns_query *q)
{
	for (struct rdns_query **pp = &queries; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	ev_timer_stop(EV_DEFAULT, &q->t);
	q->magic = 0;
	free(q);
}

static void fire(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rdns_query *q = Q(w->data);
	rdns_cb cb = q->cb;
	void *arg = q->arg;
	enum rdns_status st = q->answered ? q->st : RDNS_TEMP;
	char name[256];
	snprintf(name, sizeof(name), "%s", q->name);
	unlink_free(q);
	cb(arg, st, st == RDNS_OK ? name : NULL);
}

int rdns_init(void)
{
	if (init_fails)
		return -1;
	ready = true;
	return 0;
}

void rdns_shutdown(void)
{
	while (queries)
		unlink_free(queries);
	ready = false;
}

struct rdns_query *rdns_lookup(const struct mg_addr *a, double timeout, rdns_cb cb, void *arg)
{
	struct rdns_query *q = calloc(1, sizeof(*q));
	if (!q)
		abort();
	q->magic = Q_MAGIC;
	q->cb = cb;
	q->arg = arg;
	ev_timer_init(&q->t, fire, ready ? timeout : 0., 0.);
	q->t.data = q;
	ev_timer_start(EV_DEFAULT, &q->t);
	if (!ready)
		q->answered = true, q->st = RDNS_TEMP;
	struct rdns_query **pp = &queries;
	while (*pp)
		pp = &(*pp)->next;
	*pp = q;
	return q;
}

void rdns_cancel(struct rdns_query **qp)
{
	struct rdns_query *q = *qp;
	*qp = NULL;
	if (q)
		unlink_free(Q(q));
}

const char *rdns_lib_version(void)
{
	return "sim";
}

unsigned sim_rdns_live(void)
{
	unsigned n = 0;
	for (struct rdns_query *q = queries; q; q = q->next)
		n++;
	return n;
}

unsigned sim_rdns_unanswered(void)
{
	unsigned n = 0;
	for (struct rdns_query *q = queries; q; q = q->next)
		n += !q->answered;
	return n;
}

bool sim_rdns_answer(int status, const char *name)
{
	for (struct rdns_query *q = queries; q; q = q->next) {
		if (q->answered)
			continue;
		q->answered = true;
		q->st = (enum rdns_status)status;
		snprintf(q->name, sizeof(q->name), "%s", name && status == RDNS_OK ? name : "");
		ev_timer_stop(EV_DEFAULT, &q->t);
		ev_timer_set(&q->t, 0., 0.);
		ev_timer_start(EV_DEFAULT, &q->t);
		return true;
	}
	return false;
}
