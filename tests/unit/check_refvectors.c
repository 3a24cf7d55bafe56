#include "config.h"
#include "tap.h"
START_TEST(t_placeholder) { ck_assert_int_eq(1, 1); }
END_TEST
int main(void) { Suite *s = suite_create("x"); TCase *tc = tcase_create("x"); tcase_add_test(tc, t_placeholder); suite_add_tcase(s, tc); return ct_run_suite(s); }
