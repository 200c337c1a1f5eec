/* benchutil.h: helpers shared by the benchmark tools. */
#ifndef TERN_BENCHUTIL_H
#define TERN_BENCHUTIL_H

#include <netinet/in.h>

/* "A.B.C.D:PORT" into out. 0, or -1 when it is not one. */
int parse_hostport(const char *s, struct sockaddr_in *out);

#endif
