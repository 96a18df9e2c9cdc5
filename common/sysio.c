/* sysio: see sysio.h. Every function is the libc call it is named after,
 * unchanged; tests/sim/sim_net.c provides the simulated versions. */
#include "sysio.h"

#include <fcntl.h>
#include <unistd.h>

ssize_t sysio_recv(int fd, void *buf, size_t len, int flags)
{
	return recv(fd, buf, len, flags);
}

ssize_t sysio_send(int fd, const void *buf, size_t len, int flags)
{
	return send(fd, buf, len, flags);
}

int sysio_shutdown(int fd, int how)
{
	return shutdown(fd, how);
}

int sysio_close(int fd)
{
	return close(fd);
}

int sysio_socket(int domain, int type, int protocol)
{
	return socket(domain, type, protocol);
}

int sysio_connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	return connect(fd, sa, len);
}

int sysio_getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	return getsockopt(fd, level, name, val, len);
}

int sysio_setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	return setsockopt(fd, level, name, val, len);
}

int sysio_bind(int fd, const struct sockaddr *sa, socklen_t len)
{
	return bind(fd, sa, len);
}

int sysio_listen(int fd, int backlog)
{
	return listen(fd, backlog);
}

int sysio_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	return accept4(fd, sa, len, flags);
}

int sysio_getsockname(int fd, struct sockaddr *sa, socklen_t *len)
{
	return getsockname(fd, sa, len);
}

void sysio_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}
