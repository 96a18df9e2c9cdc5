/* sysio: the socket system calls of the I/O layer, one thin function each.
 * conn.c, dial.c (the dialer), proxyin.c, listener.c and server.c
 * call these instead of libc, and nothing else here knows about sockets.
 * In the daemons sysio.c forwards every call unchanged to the kernel; the
 * deterministic simulation under tests/sim/ replaces this module at link
 * time with in-memory sockets (and libev with a virtual clock), so whole
 * sessions can be fuzzed and unit-tested without a network. Keep it a
 * pure pass-through: no policy, no state. */
#ifndef MG_SYSIO_H
#define MG_SYSIO_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

ssize_t sysio_recv(int fd, void *buf, size_t len, int flags);	/* MSG_PEEK allowed */
ssize_t sysio_send(int fd, const void *buf, size_t len, int flags);
int sysio_shutdown(int fd, int how);
int sysio_close(int fd);
int sysio_socket(int domain, int type, int protocol);
int sysio_connect(int fd, const struct sockaddr *sa, socklen_t len);
int sysio_getsockopt(int fd, int level, int name, void *val, socklen_t *len);
int sysio_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int sysio_bind(int fd, const struct sockaddr *sa, socklen_t len);
int sysio_listen(int fd, int backlog);
int sysio_accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags);
int sysio_getsockname(int fd, struct sockaddr *sa, socklen_t *len);
/* Adds O_NONBLOCK to the descriptor's flags (best effort, as before). */
void sysio_set_nonblock(int fd);

#endif
