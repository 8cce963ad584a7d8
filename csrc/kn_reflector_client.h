/* The reflector's transport over a kn_client (what kn_reflector_new uses). */
#ifndef KN_REFLECTOR_CLIENT_H
#define KN_REFLECTOR_CLIENT_H

#include "kn_reflector.h"

void kn_rtransport_client(struct kn_client *c, struct kn_rtransport *out);

#endif
