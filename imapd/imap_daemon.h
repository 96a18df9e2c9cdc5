/* imap_daemon: the daemon_ops of mailgate-imapd (DESIGN.md §2, §5). main.c
 * hands them to daemon_main(); the session fuzzer drives the same table
 * without a main(). */
#ifndef MG_IMAP_DAEMON_H
#define MG_IMAP_DAEMON_H

#include "daemon.h"

extern const struct daemon_ops imapd_ops;

#endif
