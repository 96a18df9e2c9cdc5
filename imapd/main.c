/* mailgate-imapd: IMAPS / STARTTLS front end (DESIGN.md §2, §5); the
 * shared start-up is common/daemon.c, the IMAP plug-in imap_daemon.c. */
#include "imap_daemon.h"

int main(int argc, char **argv)
{
	return daemon_main(&imapd_ops, argc, argv);
}
