/* grow.h - arrays that grow by doubling.
 *
 * Every growing array here is a pointer, a count and a capacity; the
 * owner of the pointer frees it.
 */
#ifndef USBSYNC_GROW_H
#define USBSYNC_GROW_H

#include <stddef.h>

/* Make room for `need` elements of `size` bytes in `p` (capacity *cap),
 * doubling from 8 and never past `max` elements.  Returns the array,
 * possibly moved, with *cap updated; or NULL, leaving p and *cap as they
 * were, when need > max, the bytes would overflow, or realloc fails. */
void *grow_array(void *p, size_t *cap, size_t need, size_t size, size_t max);

#endif
