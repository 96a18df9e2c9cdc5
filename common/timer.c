/* timer: a thin wrapper over ev_timer. */
#include "timer.h"
#include "xmem.h"

#include <ev.h>
#include <stdlib.h>

struct mg_timer {
	ev_timer t;
	mg_timer_cb cb;
	void *arg;
};

static void fire(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct mg_timer *t = w->data;
	t->cb(t->arg);
}

struct mg_timer *mg_timer_start(double after, double repeat, mg_timer_cb cb, void *arg)
{
	struct mg_timer *t = xcalloc(1, sizeof(*t));
	t->cb = cb;
	t->arg = arg;
	ev_timer_init(&t->t, fire, after, repeat);
	t->t.data = t;
	ev_timer_start(EV_DEFAULT, &t->t);
	return t;
}

void mg_timer_stop(struct mg_timer **tp)
{
	if (!*tp)
		return;
	ev_timer_stop(EV_DEFAULT, &(*tp)->t);
	free(*tp);
	*tp = NULL;
}
