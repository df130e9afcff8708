/* Arrays that grow by doubling: bounds, overflow, and what a failure
 * leaves. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/grow.h"

Test(grow_array, doubles_from_eight_and_keeps_the_contents)
{
	size_t cap = 0;
	int *a = grow_array(NULL, &cap, 1, sizeof *a, 1000);
	cr_assert_not_null(a);
	cr_expect_eq(cap, 8);
	for (int i = 0; i < 8; i++)
		a[i] = i;
	int *b = grow_array(a, &cap, 8, sizeof *b, 1000);
	cr_expect_eq(b, a, "no move while it fits");
	b = grow_array(a, &cap, 9, sizeof *b, 1000);
	cr_assert_not_null(b);
	cr_expect_eq(cap, 16);
	for (int i = 0; i < 8; i++)
		cr_expect_eq(b[i], i);
	free(b);
}

Test(grow_array, stops_at_max_and_refuses_past_it)
{
	size_t cap = 0;
	char *a = grow_array(NULL, &cap, 9, 1, 10);
	cr_assert_not_null(a);
	cr_expect_eq(cap, 10, "16 would pass the bound of 10");
	cr_expect_null(grow_array(a, &cap, 11, 1, 10));
	cr_expect_eq(cap, 10, "a refusal leaves the capacity");
	free(a);
}

Test(grow_array, refuses_sizes_that_would_overflow)
{
	size_t cap = 0;
	cr_expect_null(grow_array(NULL, &cap, 2, SIZE_MAX / 2, SIZE_MAX));
	cr_expect_eq(cap, 0);
	cr_expect_null(grow_array(NULL, &cap, SIZE_MAX, 1, SIZE_MAX - 1));
}
