/* smtp_daemon: the daemon_ops of mailgate-smtpd (DESIGN.md §2, §4). main.c
 * hands them to daemon_main(); the session fuzzer drives the same table
 * without a main(). */
#ifndef MG_SMTP_DAEMON_H
#define MG_SMTP_DAEMON_H

#include "daemon.h"

extern const struct daemon_ops smtpd_ops;

#endif
