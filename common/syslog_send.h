/* syslog_send: lines to the local syslog receiver (/dev/log, facility
 * mail) over a non-blocking datagram socket: a full receiver queue drops
 * lines (counted, and reported by the next line that gets through)
 * instead of stopping the event loop. */
#ifndef MG_SYSLOG_SEND_H
#define MG_SYSLOG_SEND_H

/* The longest line syslog_send() takes (the log's own bound). */
#define SYSLOG_LINE_MAX 3072

/* Connects to /dev/log (again later if it is not there yet); tag is kept
 * (a static string) and starts every line with the pid. */
void syslog_send_open(const char *tag);
/* prio: LOG_ERR ... LOG_DEBUG. Never blocks. */
void syslog_send(int prio, const char *line);
/* Lines dropped and not yet reported. */
unsigned long long syslog_send_dropped(void);

#endif
