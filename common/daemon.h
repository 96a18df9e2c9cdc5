/* daemon: the start-up both daemons share - the command line (-c -f -t -d
 * -V), loading and checking the configuration (-t stops there),
 * detaching so that the parent exits only once the gateway serves, then
 * the master (master.h), which forks the workers. The protocol plugs in
 * through struct daemon_ops. */
#ifndef MG_DAEMON_H
#define MG_DAEMON_H

#include "daemon_ops.h"

int daemon_main(const struct daemon_ops *ops, int argc, char **argv);

#endif
