/* The shared library's own translation unit. All code lives in the
 * fwp_internal archive, linked whole into libfwp.so; this file only gives the
 * shared-library target a source and checks that the public header is valid C99. */
#include "fwp/fwp.h"
