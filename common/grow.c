#include "common/grow.h"

#include <stdint.h>
#include <stdlib.h>

void *grow_array(void *p, size_t *cap, size_t need, size_t size, size_t max)
{
	size_t n = *cap ? *cap : 8;
	void *np;

	if (need <= *cap)
		return p;
	if (need > max || size == 0)
		return NULL;
	while (n < need)
		n = n > SIZE_MAX / 2 ? SIZE_MAX : n * 2;
	if (n > max)
		n = max;
	if (n > SIZE_MAX / size || !(np = realloc(p, n * size)))
		return NULL;
	*cap = n;
	return np;
}
