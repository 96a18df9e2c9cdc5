/* timer: one-shot or repeating timers on the worker's event loop for code
 * outside common/ (shutdown deadlines and the like). */
#ifndef MG_TIMER_H
#define MG_TIMER_H

struct mg_timer;
typedef void (*mg_timer_cb)(void *arg);

struct mg_timer *mg_timer_start(double after, double repeat, mg_timer_cb cb, void *arg);
void mg_timer_stop(struct mg_timer **t);

#endif
