/* rows.h - table-driven Criterion tests: a table of rows, one
 * parameterized test that runs each row as its own test (own fixture,
 * own process).
 *
 * Criterion hands a parameter to a test in another process, where
 * pointers into this one mean nothing (the tables hold strings), so each
 * row goes by its index into the table, which both processes have.
 *
 *     static const struct row rows[] = { ... };
 *     ROWS_BY_INDEX(suite, name, rows)
 *     ParameterizedTest(size_t *row_index, suite, name)
 *     {
 *             const struct row *row = &rows[*row_index];
 *             ...
 *     }
 */
#ifndef USBSYNC_TEST_ROWS_H
#define USBSYNC_TEST_ROWS_H

#include <stddef.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#define ROWS_BY_INDEX(suite, name, table)                                       \
	ParameterizedTestParameters(suite, name)                                \
	{                                                                       \
		static size_t index[sizeof(table) / sizeof((table)[0])];        \
									\
		for (size_t i = 0; i < sizeof(table) / sizeof((table)[0]); i++) \
			index[i] = i;                                           \
		return cr_make_param_array(size_t, index,                      \
					   sizeof(table) / sizeof((table)[0]));  \
	}

#endif
