/* mailgate-imapd: IMAPS / STARTTLS front end (DESIGN.md §2, §5). The
 * shared start-up lives in common/daemon.c; imap_daemon.c plugs in IMAP. */
#include "imap_daemon.h"

int main(int argc, char **argv)
{
	return daemon_main(&imapd_ops, argc, argv);
}
