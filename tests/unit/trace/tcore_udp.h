/*
 * A UDP listener on 127.0.0.1 port 0 for the X-Ray and DogStatsD tests;
 * receives with a timeout so a missing datagram fails instead of hanging.
 */
#ifndef TCORE_UDP_H
#define TCORE_UDP_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

static inline int udp_listen(uint16_t *port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof sa;
	struct timeval tv = {.tv_sec = 5};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) ||
	    getsockname(fd, (struct sockaddr *)&sa, &len))
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Receives one datagram into buf (NUL-terminated); returns its length or -1. */
static inline ssize_t udp_recv(int fd, char *buf, size_t size)
{
	ssize_t n = recv(fd, buf, size - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	return n;
}

#endif
