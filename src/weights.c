/* placeholder */
#include "sattn_internal.h"
