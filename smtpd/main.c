/* mailgate-smtpd: SMTPS / STARTTLS front end (DESIGN.md §2, §4). The
 * shared start-up lives in common/daemon.c; smtp_daemon.c plugs in SMTP. */
#include "smtp_daemon.h"

int main(int argc, char **argv)
{
	return daemon_main(&smtpd_ops, argc, argv);
}
