/* smtp_probe: the start-up probe (DESIGN.md §4.1): each upstream address
 * is asked for its EHLO once when a worker starts, so the pass-through
 * extensions (8BITMIME, SMTPUTF8, DSN), SIZE and AUTH are known before the
 * first client's EHLO. A small client of its own on top of smtp_upstream. */
#ifndef MG_SMTP_PROBE_H
#define MG_SMTP_PROBE_H

struct smtp_server;

/* Non-blocking: the answers land in smtp_server_note_ehlo(). */
void smtp_probe_start(struct smtp_server *srv);

#endif
