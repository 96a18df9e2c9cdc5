/* imap_daemon: mailgate-imapd's plug-in for the shared daemon start-up
 * (common/daemon.h). main.c hands it to daemon_main(); the session
 * fuzzer drives the same table without a main(). */
#ifndef MG_IMAP_DAEMON_H
#define MG_IMAP_DAEMON_H

#include "daemon.h"

extern const struct daemon_ops imapd_ops;

#endif
