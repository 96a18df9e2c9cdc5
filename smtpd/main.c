/* mailgate-smtpd: SMTPS / STARTTLS front end (DESIGN.md §2, §4); the
 * shared start-up is common/daemon.c, the SMTP plug-in smtp_daemon.c. */
#include "smtp_daemon.h"

int main(int argc, char **argv)
{
	return daemon_main(&smtpd_ops, argc, argv);
}
