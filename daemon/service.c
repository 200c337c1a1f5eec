/* service.c: the sd_notify protocol and the privilege drop (service.h). The protocol is
 * implemented directly: a notification is one datagram to the AF_UNIX socket named by
 * $NOTIFY_SOCKET (a path, or an abstract name written with a leading '@'). */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "service.h"

int service_notify(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !path[0]) return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@')) {
        errno = EINVAL;
        return -1;
    }
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@') sa.sun_path[0] = 0; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t k = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                       (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    int err = errno;
    close(fd);
    errno = err;
    return k < 0 ? -1 : 0;
}

uint64_t service_watchdog_ms(void)
{
    const char *usec = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
    if (!usec) return 0;
    if (pid && (pid_t)strtol(pid, NULL, 10) != getpid()) return 0; /* meant for another */
    unsigned long long us = strtoull(usec, NULL, 10);
    return us / 1000;
}

int service_drop_privileges(const char *user, const char *group)
{
    if (!user) return 0;
    const char *step = "user";
    errno = 0;
    struct passwd *pw = getpwnam(user);
    if (!pw) goto fail;
    gid_t gid = pw->pw_gid;
    if (group) {
        step = "group";
        errno = 0;
        struct group *gr = getgrnam(group);
        if (!gr) goto fail;
        gid = gr->gr_gid;
    }
    step = "setgroups";
    if (setgroups(1, &gid)) goto fail;
    step = "setgid";
    if (setgid(gid)) goto fail;
    step = "setuid";
    if (setuid(pw->pw_uid)) goto fail;
    /* A setuid away from root clears every capability; make sure nothing brings them back. */
    step = "no_new_privs";
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) goto fail;
    if (pw->pw_uid != 0 && setuid(0) == 0) {
        errno = EPERM;
        step = "root could be regained";
        goto fail;
    }
    tlog(CFG_LOG_INFO, "privileges_dropped", LF_S("user", user), LF_U("uid", pw->pw_uid),
         LF_U("gid", gid));
    return 0;
fail:
    tlog(CFG_LOG_ERROR, "privilege_drop_failed", LF_S("step", step), LF_S("user", user),
         LF_S("group", group ? group : ""),
         LF_S("error", errno ? strerror(errno) : "no such user or group"));
    return -1;
}
