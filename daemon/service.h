/* service.h: what ternd does for its service manager: the sd_notify protocol (READY, STATUS,
 * WATCHDOG, STOPPING: one datagram each to $NOTIFY_SOCKET) and dropping privileges after the
 * sockets are bound (server.user / server.group). */
#ifndef TERN_SERVICE_H
#define TERN_SERVICE_H

#include <stdbool.h>
#include <stdint.h>

/* Send one notification ("READY=1\nSTATUS=..."); a no-op without $NOTIFY_SOCKET. 0, or -1
 * with errno when the send failed. */
int service_notify(const char *msg);
/* The watchdog interval systemd asked for ($WATCHDOG_USEC, for this process), in ms; 0: none. */
uint64_t service_watchdog_ms(void);

/* Become user (and group: NULL for the user's primary group) for good: supplementary groups
 * set to that group alone, then gid, then uid, then a check that root cannot be regained.
 * Logs what failed and returns -1; NULL user: nothing to do, 0. */
int service_drop_privileges(const char *user, const char *group);

#endif
